package ratecard_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"strings"

	ratecard "github.com/ratecard/ratecard/go"
)

func ExampleLimiter_Check() {
	l, err := ratecard.New(ratecard.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	signIn := &ratecard.Request{
		API:      ratecard.APIFrontend,
		Method:   "POST",
		Path:     "/v1/client/sign_ins",
		ClientIP: netip.MustParseAddr("203.0.113.9"),
	}
	for i := 0; i < 6; i++ {
		d, err := l.Check(signIn)
		if err != nil {
			log.Fatal(err)
		}
		h, err := d.Headers()
		if err != nil {
			log.Fatal(err)
		}
		if d.Allowed {
			fmt.Printf("allowed  RateLimit: %s\n", h.RateLimit)
		} else {
			fmt.Printf("denied   RateLimit: %s  Retry-After: %s\n", h.RateLimit, h.RetryAfter)
		}
	}
	// Output:
	// allowed  RateLimit: "fapi.sign_ins.create";r=4;t=2
	// allowed  RateLimit: "fapi.sign_ins.create";r=3;t=4
	// allowed  RateLimit: "fapi.sign_ins.create";r=2;t=6
	// allowed  RateLimit: "fapi.sign_ins.create";r=1;t=8
	// allowed  RateLimit: "fapi.sign_ins.create";r=0;t=10
	// denied   RateLimit: "fapi.sign_ins.create";r=0;t=10  Retry-After: 2
}

func ExampleFrontend() {
	l, err := ratecard.New(ratecard.Options{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/client/sign_ins", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "signed in")
	})
	// Behind a load balancer at 10.0.0.0/8, trust its X-Forwarded-For.
	handler := ratecard.Frontend(l, mux, ratecard.MiddlewareOptions{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	_ = http.ListenAndServe("127.0.0.1:8080", handler)
}

func ExampleTransport() {
	// A Transport in pace mode: a bulk job that never draws a 429.
	t, err := ratecard.NewTransport(nil, ratecard.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	client := &http.Client{Transport: t}

	for _, id := range []string{"user_1", "user_2"} {
		req, err := http.NewRequestWithContext(context.Background(), "PATCH",
			"https://api.example.com/v1/users/"+id+"/metadata", strings.NewReader(`{"public_metadata":{}}`))
		if err != nil {
			log.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk_live_...")
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}
}
