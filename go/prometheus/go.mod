// The Prometheus collector of ratecard's metrics, in a module of its own so
// that the ratecard module needs nothing but the standard library. Every
// dependency comes from Debian's Go packages
// (golang-github-prometheus-client-golang-dev and what it depends on), not
// from a module proxy.
module github.com/ratecard/ratecard/go/prometheus

go 1.19

require (
	github.com/prometheus/client_golang v1.14.0
	github.com/prometheus/client_model v0.3.0
	github.com/prometheus/common v0.39.0
	github.com/ratecard/ratecard/go v0.0.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.1.2 // indirect
	github.com/golang/protobuf v1.5.2 // indirect
	github.com/matttproud/golang_protobuf_extensions v1.0.4 // indirect
	github.com/prometheus/procfs v0.8.0 // indirect
	golang.org/x/sys v0.3.0 // indirect
	google.golang.org/protobuf v1.28.1 // indirect
)

replace github.com/ratecard/ratecard/go => ../

replace (
	github.com/beorn7/perks => /usr/share/gocode/src/github.com/beorn7/perks
	github.com/cespare/xxhash/v2 => /usr/share/gocode/src/github.com/cespare/xxhash
	github.com/golang/protobuf => /usr/share/gocode/src/github.com/golang/protobuf
	github.com/google/go-cmp => /usr/share/gocode/src/github.com/google/go-cmp
	github.com/prometheus/client_golang => /usr/share/gocode/src/github.com/prometheus/client_golang
	github.com/prometheus/client_model => /usr/share/gocode/src/github.com/prometheus/client_model
	github.com/prometheus/common => /usr/share/gocode/src/github.com/prometheus/common
	github.com/prometheus/procfs => /usr/share/gocode/src/github.com/prometheus/procfs
	golang.org/x/sync => /usr/share/gocode/src/golang.org/x/sync
	golang.org/x/sys => /usr/share/gocode/src/golang.org/x/sys
	google.golang.org/protobuf => /usr/share/gocode/src/google.golang.org/protobuf
)

// Shipped without a go.mod: go/deps.sh makes it a module.
replace github.com/matttproud/golang_protobuf_extensions => ../.deps/protobuf-extensions
