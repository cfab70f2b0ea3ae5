// Package ratecardprom is a prometheus.Collector of ratecard's metrics,
// for programs that expose them through client_golang's registry. It
// lives in a module of its own, so the ratecard module stays free of
// dependencies; a program without client_golang serves
// ratecard.MetricsHandler instead.
//
//	prometheus.MustRegister(ratecardprom.NewCollector(ratecard.MetricsZone{Name: "api", Source: l}))
//
// Names, labels and help are the C library's (ratecard_write_metrics, the
// one writer every ratecard host uses): the collector parses that page
// and emits its samples as they are.
package ratecardprom

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	ratecard "github.com/ratecard/ratecard/go"
)

// Collector collects the metrics of up to 32 ratecard tables.
type Collector struct {
	zones []ratecard.MetricsZone
}

// NewCollector returns a Collector of the zones' tables.
func NewCollector(zones ...ratecard.MetricsZone) *Collector {
	return &Collector{zones: append([]ratecard.MetricsZone(nil), zones...)}
}

// errorDesc names a page that could not be written or read.
var errorDesc = prometheus.NewDesc("ratecard_metrics_error", "The ratecard metrics page could not be collected.", nil, nil)

// Describe describes nothing: the families and their labels follow the
// rule table, so this is an unchecked collector.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect emits every sample of the library's page; an error (a table
// closed, a page that does not parse) becomes an invalid metric, which
// the registry reports.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	page, err := ratecard.Metrics(c.zones...)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(errorDesc, err)
		return
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		ch <- prometheus.NewInvalidMetric(errorDesc, fmt.Errorf("ratecardprom: the library's page does not parse: %w", err))
		return
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	descs := map[string]*prometheus.Desc{}
	for _, name := range names {
		f := families[name]
		for _, m := range f.Metric {
			labels, values := make([]string, 0, len(m.Label)), make([]string, 0, len(m.Label))
			for _, l := range m.Label {
				labels, values = append(labels, l.GetName()), append(values, l.GetValue())
			}
			key := name + "\x00" + strings.Join(labels, "\x00")
			desc := descs[key]
			if desc == nil {
				desc = prometheus.NewDesc(name, f.GetHelp(), labels, nil)
				descs[key] = desc
			}
			ch <- sample(desc, f.GetType(), m, values)
		}
	}
}

// sample is one sample of the page as a constant metric.
func sample(desc *prometheus.Desc, t dto.MetricType, m *dto.Metric, values []string) prometheus.Metric {
	var (
		vt prometheus.ValueType
		v  float64
	)
	switch t {
	case dto.MetricType_COUNTER:
		vt, v = prometheus.CounterValue, m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		vt, v = prometheus.GaugeValue, m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		vt, v = prometheus.UntypedValue, m.GetUntyped().GetValue()
	default:
		return prometheus.NewInvalidMetric(desc, fmt.Errorf("ratecardprom: a %s in the page", t))
	}
	s, err := prometheus.NewConstMetric(desc, vt, v, values...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return s
}

var _ prometheus.Collector = (*Collector)(nil)
