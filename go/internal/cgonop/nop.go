// Package cgonop is the baseline of the benchmarks: a cgo call to a C
// function that does nothing, the least any call into the C library costs.
package cgonop

/*
static int ratecard_nop(void) { return 0; }
*/
import "C"

// Call calls a C function that does nothing.
func Call() int { return int(C.ratecard_nop()) }
