// The adapter of ratecard's RedisLimiter to redigo and redisc, in a module
// of its own so that the ratecard module needs nothing but the standard
// library. Every dependency comes from Debian's Go packages
// (golang-github-gomodule-redigo-dev, golang-github-mna-redisc-dev), not
// from a module proxy.
module github.com/ratecard/ratecard/go/redis

go 1.19

require (
	github.com/gomodule/redigo v1.8.3
	github.com/mna/redisc v1.1.7
	github.com/ratecard/ratecard/go v0.0.0
)

replace github.com/ratecard/ratecard/go => ../

replace github.com/gomodule/redigo => /usr/share/gocode/src/github.com/gomodule/redigo

// redisc ships without a go.mod: go/deps.sh makes it a module.
replace github.com/mna/redisc => ../.deps/redisc
