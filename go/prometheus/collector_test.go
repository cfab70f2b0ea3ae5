package ratecardprom

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	ratecard "github.com/ratecard/ratecard/go"
)

const signInRule = "fapi.sign_ins.create"

// decisions makes, on a fresh limiter of Clerk's table, the decisions the
// tests count: per client IP, n sign-ins; then exempt JWKS requests and
// unmatched ones. It returns the allowed and limited sign-ins.
func decisions(t *testing.T, l *ratecard.Limiter, perIP map[string]int, exempt, unmatched int) (allowed, limited int) {
	t.Helper()
	for ip, n := range perIP {
		for i := 0; i < n; i++ {
			d, err := l.Check(&ratecard.Request{API: ratecard.APIFrontend, Method: "POST", Path: "/v1/client/sign_ins",
				ClientIP: netip.MustParseAddr(ip)})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				allowed++
			} else {
				limited++
			}
		}
	}
	for i := 0; i < exempt; i++ {
		if d, err := l.Check(&ratecard.Request{API: ratecard.APIBackend, Method: "GET", Path: "/v1/jwks", SecretKey: "sk_live_x"}); err != nil || !d.Exempt {
			t.Fatalf("jwks: %+v, %v", d, err)
		}
	}
	for i := 0; i < unmatched; i++ {
		if d, err := l.Check(&ratecard.Request{API: ratecard.APIFrontend, Method: "GET", Path: "/v1/environment"}); err != nil || d.Rule != "" {
			t.Fatalf("environment: %+v, %v", d, err)
		}
	}
	return allowed, limited
}

func newLimiter(t *testing.T) *ratecard.Limiter {
	t.Helper()
	l, err := ratecard.New(ratecard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// value finds the sample of family name with exactly labels.
func value(fams []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.Metric {
			if len(m.Label) != len(labels) {
				continue
			}
			for _, l := range m.Label {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Untyped != nil:
				return m.Untyped.GetValue(), true
			}
		}
	}
	return 0, false
}

func TestCollectorReemitsEverySampleOfTheLibrarysPage(t *testing.T) {
	api, other := newLimiter(t), newLimiter(t)
	allowed, limited := decisions(t, api, map[string]int{"192.0.2.1": 8, "192.0.2.2": 2}, 2, 1)
	if allowed != 7 || limited != 3 {
		t.Fatalf("%d allowed, %d limited: Clerk's sign-in limit is 5 per 10 s", allowed, limited)
	}
	decisions(t, other, map[string]int{"192.0.2.1": 1}, 0, 0)
	zones := []ratecard.MetricsZone{{Name: "api", Source: api}, {Name: "other", Source: other}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(zones...))
	got, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}

	// The test's own counts, in the families the library names.
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ratecard_decisions_total", map[string]string{"zone": "api", "rule": signInRule, "outcome": "allowed"}, 7},
		{"ratecard_decisions_total", map[string]string{"zone": "api", "rule": signInRule, "outcome": "limited"}, 3},
		{"ratecard_decisions_total", map[string]string{"zone": "api", "rule": "bapi.jwks", "outcome": "exempt"}, 2},
		{"ratecard_decisions_total", map[string]string{"zone": "api", "outcome": "unmatched"}, 1},
		{"ratecard_decisions_total", map[string]string{"zone": "other", "rule": signInRule, "outcome": "allowed"}, 1},
		{"ratecard_table_slots", map[string]string{"zone": "api"}, 65536},
	} {
		if v, ok := value(got, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}

	// Every sample of the page, and nothing else, with its type and help.
	page, err := ratecard.Metrics(zones...)
	if err != nil {
		t.Fatal(err)
	}
	var p expfmt.TextParser
	want, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d families gathered, %d in the page", len(got), len(want))
	}
	for _, f := range got {
		w := want[f.GetName()]
		if w == nil || w.GetType() != f.GetType() || w.GetHelp() != f.GetHelp() || len(w.Metric) != len(f.Metric) {
			t.Errorf("family %s: gathered %v, page %v", f.GetName(), f, w)
			continue
		}
		for _, m := range w.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			wv := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			if v, ok := value(got, f.GetName(), labels); !ok || v != wv {
				t.Errorf("%s%v: gathered %v (found %v), page %v", f.GetName(), labels, v, ok, wv)
			}
		}
	}
}

func TestCollectorOutputAndLibraryPagePassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	l := newLimiter(t)
	decisions(t, l, map[string]int{"192.0.2.1": 8}, 1, 1)
	zone := ratecard.MetricsZone{Name: `a "quoted" zone`, Source: l}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(zone))
	collected := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer collected.Close()
	direct := httptest.NewServer(ratecard.MetricsHandler(zone))
	defer direct.Close()
	for _, srv := range []*httptest.Server{collected, direct} {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body, []byte(`zone="a \"quoted\" zone"`)) {
			t.Errorf("%s: the zone label is not escaped:\n%s", srv.URL, body)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics (%s, %s): %v\n%s\n%s", srv.URL, resp.Header.Get("Content-Type"), err, out, body)
		}
	}
}

func TestCollectorOfAClosedTableReportsAnError(t *testing.T) {
	l := newLimiter(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(ratecard.MetricsZone{Name: "api", Source: l}))
	l.Close()
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Gather after Close: %v", err)
	}
}

// startPrometheus runs a Prometheus server on 127.0.0.1 that scrapes
// target every second, with its own port and storage, killed by pid when
// the test ends. It returns its base URL once it answers (30 s at most).
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (apt-get install prometheus): %v", err)
	}
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ratecard
    static_configs:
      - targets: ['%s']
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("prometheus pid %d did not exit", cmd.Process.Pid)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s", log.String())
		default:
		}
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 30 s: %s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// query is the value of an instant query that selects one sample; false
// while it selects none.
func query(t *testing.T, base, q string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]interface{}
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %s, %v", q, r.Status, err)
	}
	switch len(r.Data.Result) {
	case 0:
		return 0, false
	case 1:
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %v", q, r.Data.Result[0].Value)
		}
		return v, true
	}
	t.Fatalf("query %s: %d samples", q, len(r.Data.Result))
	return 0, false
}

// await polls q until it equals want (60 s at most).
func await(t *testing.T, base, q string, want float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		v, ok := query(t, base, q)
		if ok && v == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s = %v (found %v), want %v, after 60 s", q, v, ok, want)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func TestPrometheusScrapesAGoServerAndReadsBackItsDecisions(t *testing.T) {
	l := newLimiter(t)
	allowed, limited := decisions(t, l, map[string]int{"192.0.2.1": 8, "192.0.2.2": 2}, 2, 1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(ratecard.MetricsZone{Name: "api", Source: l}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	base := startPrometheus(t, ln.Addr().String())
	sel := func(labels string) string {
		return `ratecard_decisions_total{job="ratecard",zone="api",` + labels + `}`
	}
	await(t, base, `up{job="ratecard"}`, 1)
	await(t, base, sel(`rule="`+signInRule+`",outcome="allowed"`), float64(allowed))
	await(t, base, sel(`rule="`+signInRule+`",outcome="limited"`), float64(limited))
	await(t, base, sel(`rule="bapi.jwks",outcome="exempt"`), 2)
	await(t, base, sel(`outcome="unmatched"`), 1)

	// Later decisions reach Prometheus with the next scrapes.
	more, _ := decisions(t, l, map[string]int{"192.0.2.3": 4}, 0, 0)
	await(t, base, sel(`rule="`+signInRule+`",outcome="allowed"`), float64(allowed+more))
}
