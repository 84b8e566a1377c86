// Command naive is the benchmark's baseline HTTP lock server: an echo app
// whose handlers bind a JSON body and run one rawlock script per request,
// with nothing else (no validation of names, no fences, no waiting, no
// metrics). It answers the same routes as leasehold serve, for the same
// client:
//
//	POST /v1/leases/{name}/acquire  {"ttl":"10s"}   -> 200 {"name","token","ttl_ms"} | 409
//	POST /v1/leases/{name}/release  {"token":"..."} -> 200 {"name","released":true} | 409
//	GET  /readyz                                    -> 200 while Redis answers
//
// It is started by the bench command (go run ./bench), not by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/leasehold/leasehold/bench/rawlock"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "naive:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("naive", flag.ContinueOnError)
	addr := fs.String("redis", "127.0.0.1:6379", "Redis `host:port`")
	listen := fs.String("listen", "127.0.0.1:7071", "`address` to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: *addr})
	defer rdb.Close()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/readyz", func(c echo.Context) error {
		if err := rdb.Ping(c.Request().Context()).Err(); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": "backend_unavailable"})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	})
	e.POST("/v1/leases/:name/acquire", func(c echo.Context) error {
		var req struct {
			TTL string `json:"ttl"`
		}
		if err := c.Bind(&req); err != nil {
			return err
		}
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
		name, token := c.Param("name"), rawlock.NewToken()
		ok, err := rawlock.Acquire(c.Request().Context(), rdb, "naive:{"+name+"}", token, ttl)
		if err != nil {
			return err
		}
		if !ok {
			return c.JSON(http.StatusConflict, map[string]string{"error": "lease_held", "name": name})
		}
		return c.JSON(http.StatusOK, map[string]any{"name": name, "token": token, "ttl_ms": ttl.Milliseconds()})
	})
	e.POST("/v1/leases/:name/release", func(c echo.Context) error {
		var req struct {
			Token string `json:"token"`
		}
		if err := c.Bind(&req); err != nil {
			return err
		}
		name := c.Param("name")
		ok, err := rawlock.Release(c.Request().Context(), rdb, "naive:{"+name+"}", req.Token)
		if err != nil {
			return err
		}
		if !ok {
			return c.JSON(http.StatusConflict, map[string]string{"error": "not_holder", "name": name})
		}
		return c.JSON(http.StatusOK, map[string]any{"name": name, "released": true})
	})

	errc := make(chan error, 1)
	go func() { errc <- e.Start(*listen) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
