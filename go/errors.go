package ratecard

import "errors"

// Status is an error reported by the C library (a ratecard_status). Compare
// with errors.Is against the Err constants.
type Status uint32

// Error names the status as the C library does.
func (s Status) Error() string { return "ratecard: " + cStatusText(s) }

const (
	statusOK             Status = 0
	statusBufferTooShort Status = 10
)

// The statuses a Limiter can return. Check and its kin return only
// ErrInvalidIP, ErrUnknownAPI, ErrMissingSubject, ErrUnknownRule and
// ErrClockUnavailable (a RedisLimiter also ErrMixedSubjects and, under its
// policy, ErrRemoteBadReply inside a RedisError); the others come from New.
const (
	// ErrInvalidArgument: a malformed argument.
	ErrInvalidArgument Status = 2
	// ErrInvalidIP: a client IP that is not 4 or 16 bytes.
	ErrInvalidIP Status = 3
	// ErrUnknownAPI: a Request.API that is neither APIFrontend nor APIBackend.
	ErrUnknownAPI Status = 4
	// ErrMissingSubject: the request matched a rule but lacks that rule's
	// subject (a Frontend request without a client IP, a Backend request
	// with neither secret key, tenant nor client IP).
	ErrMissingSubject Status = 5
	// ErrUnknownRule: a rule index or name not in the limiter's table.
	ErrUnknownRule Status = 6
	// ErrInvalidConfig: an option out of range.
	ErrInvalidConfig Status = 7
	// ErrInvalidRules: a custom rule table that cannot be used.
	ErrInvalidRules Status = 8
	// ErrInvalidCapacity: a capacity of 0 or above 1<<28 slots.
	ErrInvalidCapacity Status = 9
	// ErrNoLockFreeCAS: this CPU has no lock-free 128-bit compare-and-swap.
	ErrNoLockFreeCAS Status = 17
	// ErrOutOfMemory: an allocation failed.
	ErrOutOfMemory Status = 18
	// ErrSeedUnavailable: the operating system supplied no random seed.
	ErrSeedUnavailable Status = 19
	// ErrPanic: a bug inside the library was caught; nothing was done.
	ErrPanic Status = 21
	// ErrClockUnavailable: the monotonic clock could not be read.
	ErrClockUnavailable Status = 22
	// ErrRemoteBadReply: Redis answered a charge with a reply that is not
	// the script's (another script under its name, a proxy's answer).
	ErrRemoteBadReply Status = 25
	// ErrMixedSubjects: the request's rules count by different subjects,
	// so their Redis keys cannot share one Cluster slot (a custom table
	// mixing client-IP and instance rules in one API).
	ErrMixedSubjects Status = 26
	// ErrInvalidCall: a prepared Redis call the library does not recognise
	// (a bug of the binding: it never hands one out).
	ErrInvalidCall Status = 27
)

var (
	// ErrClosed is returned by calls on a closed Limiter.
	ErrClosed = errors.New("ratecard: limiter closed")
	// ErrTransportClosed is returned by round trips of a closed Transport.
	ErrTransportClosed = errors.New("ratecard: transport closed")
	// ErrNeverFits is returned by Wait when the cost exceeds the binding
	// rule's burst: no wait helps.
	ErrNeverFits = errors.New("ratecard: cost exceeds the rule's burst")
)
