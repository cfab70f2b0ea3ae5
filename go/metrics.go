package ratecard

import (
	"net/http"
	"runtime"
	"strconv"
)

// MetricsSource is a table whose counters a metrics page shows: a
// *Limiter, or a *RedisLimiter (its decisions, round trips, errors,
// fallbacks and cached denials).
type MetricsSource interface {
	metricsTable() *Limiter
}

func (l *Limiter) metricsTable() *Limiter { return l }

// MetricsZone is one table on a metrics page, its samples labelled
// zone=Name.
type MetricsZone struct {
	Name   string
	Source MetricsSource
}

// MetricsContentType is the Content-Type of Metrics' page: Prometheus'
// text exposition format.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// Metrics returns the counters of up to 32 tables as one page in
// Prometheus' text exposition format, written by the C library (the one
// writer of names, labels and help on every ratecard host): decisions by
// zone, rule and outcome, inserts, evictions (in debt apart), table size
// and occupancy, and the Redis mode's round trips, errors, fallbacks and
// cached denials. Labels are zones, rules and outcomes, never subjects.
// Counters only grow while a table lives; occupancy is a scan of each
// table, so call this for a scrape, not per request.
func Metrics(zones ...MetricsZone) ([]byte, error) {
	if len(zones) > maxMetricsZones {
		return nil, ErrInvalidArgument
	}
	tables := make([]*Limiter, len(zones))
	hs := make([]handle, len(zones))
	names := make([]string, len(zones))
	tickets := make([]int, len(zones))
	// Every table stays open until the page is written.
	entered := 0
	defer func() {
		for i := 0; i < entered; i++ {
			tables[i].gate.exit(tickets[i])
		}
		runtime.KeepAlive(tables)
	}()
	for i, z := range zones {
		if z.Source == nil {
			return nil, ErrInvalidArgument
		}
		tables[i] = z.Source.metricsTable()
		ticket, ok := tables[i].gate.enter()
		if !ok {
			return nil, ErrClosed
		}
		tickets[i], entered = ticket, i+1
		hs[i], names[i] = tables[i].h, z.Name
	}
	page, st := cWriteMetrics(hs, names)
	if st != statusOK {
		return nil, st
	}
	return page, nil
}

// Metrics returns l's counters as a metrics page (see the package
// function Metrics), its samples labelled zone.
func (l *Limiter) Metrics(zone string) ([]byte, error) {
	return Metrics(MetricsZone{Name: zone, Source: l})
}

// Metrics returns r's counters as a metrics page (see the package
// function Metrics), its samples labelled zone.
func (r *RedisLimiter) Metrics(zone string) ([]byte, error) {
	return Metrics(MetricsZone{Name: zone, Source: r})
}

// MetricsHandler serves the zones' metrics page for Prometheus to scrape
// (see Metrics); a page that cannot be written is a 500.
func MetricsHandler(zones ...MetricsZone) http.Handler {
	zs := append([]MetricsZone(nil), zones...)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		page, err := Metrics(zs...)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", MetricsContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		_, _ = w.Write(page)
	})
}
