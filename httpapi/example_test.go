package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/embedded"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// Example serves the API over the embedded store and takes a lease through
// the HTTP client; a second acquire gets a *lease.HeldError.
func Example() {
	store, err := embedded.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(store.Options())
	defer rdb.Close()
	srv := httpapi.New(lease.New(rdb, nil), &httpapi.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	defer ts.Close()

	ctx := context.Background()
	c := httpapi.NewClient(ts.URL, nil)
	l, err := c.Acquire(ctx, "nightly-report", &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "web-1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("granted to", l.Holder, "for", l.TTL)

	_, err = c.Acquire(ctx, "nightly-report", &lease.AcquireOptions{Holder: "web-2"})
	var held *lease.HeldError
	if errors.As(err, &held) {
		fmt.Println("held by", held.Holder, "for another", held.TTL.Round(time.Second))
	}
	if err := c.Release(ctx, "nightly-report", l.Token); err != nil {
		log.Fatal(err)
	}
	fmt.Println("released")
	// Output:
	// granted to web-1 for 30s
	// held by web-1 for another 30s
	// released
}
