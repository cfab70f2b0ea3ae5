package ratecard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestMetricsPageCountsEachZonesDecisions(t *testing.T) {
	a, _ := newTestLimiter(t, Options{})
	b, _ := newTestLimiter(t, Options{})
	q := quotaOf(t, a, signInRule)
	for i := 0; i < q.burst+2; i++ {
		mustCheck(t, a, signIn("192.0.2.1"))
	}
	mustCheck(t, b, signIn("192.0.2.1"))
	page, err := Metrics(MetricsZone{Name: "a", Source: a}, MetricsZone{Name: "b", Source: b})
	if err != nil {
		t.Fatal(err)
	}
	for sample, want := range map[string]string{
		`ratecard_decisions_total{zone="a",rule="fapi.sign_ins.create",outcome="allowed"}`: "5",
		`ratecard_decisions_total{zone="a",rule="fapi.sign_ins.create",outcome="limited"}`: "2",
		`ratecard_decisions_total{zone="b",rule="fapi.sign_ins.create",outcome="allowed"}`: "1",
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\d+)$`).FindSubmatch(page)
		if m == nil || string(m[1]) != want {
			t.Errorf("%s = %q, want %s", sample, m, want)
		}
	}
	if n := strings.Count(string(page), "# TYPE ratecard_decisions_total "); n != 1 {
		t.Errorf("%d TYPE lines for one family", n)
	}

	w := httptest.NewRecorder()
	MetricsHandler(MetricsZone{Name: "a", Source: a}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != MetricsContentType || !strings.Contains(w.Body.String(), `zone="a"`) {
		t.Errorf("handler: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}

func TestMetricsOfBadZonesAreErrorsAndReleaseTheTables(t *testing.T) {
	a, _ := newTestLimiter(t, Options{})
	closed, _ := newTestLimiter(t, Options{})
	closed.Close()
	if _, err := Metrics(MetricsZone{Name: "a", Source: a}, MetricsZone{Name: "c", Source: closed}); err != ErrClosed {
		t.Errorf("a closed table: %v", err)
	}
	if _, err := Metrics(MetricsZone{Name: "a", Source: a}, MetricsZone{Name: "nil"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no source: %v", err)
	}
	many := make([]MetricsZone, maxMetricsZones+1)
	for i := range many {
		many[i] = MetricsZone{Name: "z", Source: a}
	}
	if _, err := Metrics(many...); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("%d zones: %v", len(many), err)
	}
	if _, err := Metrics(MetricsZone{Name: "bad \xff utf-8", Source: a}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a zone name that is not UTF-8: %v", err)
	}
	// Every failed page released a's gate: Close does not wait forever.
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited on a page that failed")
	}
}
