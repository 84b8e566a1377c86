package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// selected says whether -only lets the configuration named name run.
func (s settings) selected(name string) bool {
	return s.only == nil || slices.Contains(s.only, name)
}

// configurations lists one round's configurations: every uncontended driver
// at every concurrency, then the contended ones.
func configurations(s settings, e *env) []config {
	type driverDef struct {
		name string
		open opener
		srv  *server
	}
	var defs []driverDef
	for _, v := range sdkVariants {
		defs = append(defs, driverDef{name: v.name, open: openSDK(v.opts)})
	}
	defs = append(defs,
		driverDef{name: "raw", open: openRaw},
		driverDef{name: "redislock", open: openRedislock},
		driverDef{name: "redsync", open: openRedsync},
	)
	for _, v := range serveVariants {
		if srv := e.servers[v.name]; srv != nil {
			defs = append(defs, driverDef{name: v.name, open: openHTTP(srv.base), srv: srv})
		}
	}
	if srv := e.servers["naive"]; srv != nil {
		defs = append(defs, driverDef{name: "naive", open: openHTTP(srv.base), srv: srv})
	}

	var cfgs []config
	for _, c := range s.conc {
		for _, d := range defs {
			if s.selected(d.name) {
				cfgs = append(cfgs, config{name: d.name, c: c, srv: d.srv, open: d.open})
			}
		}
	}
	if s.contenders > 0 {
		for _, d := range defs {
			if d.srv == nil && d.name != "raw" && s.selected("contended-"+d.name) {
				cfgs = append(cfgs, config{name: d.name, c: s.contenders, contended: true, open: d.open})
			}
		}
		for _, v := range procsVariants {
			if s.selected(v.name) && (v.driver != "etcd" || e.etcd != nil) {
				cfgs = append(cfgs, config{name: v.name, c: s.contenders, contended: true, procs: v.driver})
			}
		}
	}
	return cfgs
}

// key names a configuration in the results.
type key struct {
	name      string
	c         int
	contended bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	began := time.Now()
	e, err := newEnv(ctx, s, stderr)
	if err != nil {
		return err
	}
	defer e.close()

	cfgs := configurations(s, e)
	if len(cfgs) == 0 {
		return fmt.Errorf("-only %v selects no configuration", s.only)
	}
	perConfig := s.warmup + s.duration + 100*time.Millisecond
	estimate := time.Duration(s.rounds*len(cfgs))*perConfig + memEstimate(s.memLeases)
	for _, c := range cfgs {
		if c.procs != "" {
			estimate += time.Duration(s.rounds) * procsStartEstimate(c.c)
		}
	}
	fmt.Fprintf(stderr, "bench: %d configurations x %d rounds x (%s + %s warmup) and %d leases for memory: about %s from now\n",
		len(cfgs), s.rounds, s.duration, s.warmup, s.memLeases, estimate.Round(time.Second))

	runID := rand.Text()[:8]
	rep := &report{settings: s, redisVersion: e.redisVersion, etcdVersion: e.etcdVersion, skipped: e.skipped, loadStart: loadAverage(), samples: map[key][]sample{}}
	if s.memLeases > 0 {
		if rep.mem, err = measureMemory(ctx, e, s.memLeases, "bench-"+runID+"-mem", stderr); err != nil {
			return err
		}
	}
	for r := range s.rounds {
		shift := r * len(cfgs) / s.rounds
		order := append(slices.Clone(cfgs[shift:]), cfgs[:shift]...)
		for _, cfg := range order {
			id := "bench-" + runID + "-" + cfg.name + "-" + strconv.Itoa(cfg.c) + "-r" + strconv.Itoa(r)
			if cfg.contended {
				id += "-contended"
			}
			measureFn := measure
			if cfg.procs != "" {
				measureFn = measureProcs
			}
			smp, err := measureFn(ctx, e, cfg, s.warmup, s.duration, id)
			if err != nil {
				return err
			}
			unit := "cycles/s"
			if cfg.contended {
				unit = "grants/s"
			}
			line := fmt.Sprintf("round %d/%d %s: %s %s, p99 %s", r+1, s.rounds, cfg, kilo(smp.perSec), unit, latency(smp.p99))
			if cfg.contended {
				line += fmt.Sprintf(", fairness %.2f, handoff p50 %s", smp.fairness, latency(smp.handoff.p50))
				if smp.handoff.overlaps > 0 {
					line += fmt.Sprintf(", %d GRANTS OVERLAPPED THE PREVIOUS HOLDER'S (a broken lock, or clocks that disagree)", smp.handoff.overlaps)
				}
			}
			if smp.errors > 0 {
				line += fmt.Sprintf(", %d errors (first: %v)", smp.errors, smp.firstErr)
			}
			fmt.Fprintln(stderr, line)
			k := key{cfg.name, cfg.c, cfg.contended}
			rep.order = appendNew(rep.order, k)
			rep.samples[k] = append(rep.samples[k], smp)
		}
	}
	slices.SortStableFunc(rep.order, func(a, b key) int { return configIndex(cfgs, a) - configIndex(cfgs, b) })
	rep.write(stdout)
	fmt.Fprintf(stderr, "bench: done in %s (estimated %s)\n", time.Since(began).Round(time.Second), estimate.Round(time.Second))
	if n := rep.errors(); n > 0 {
		return fmt.Errorf("%d cycles failed; see the errors column and the progress lines", n)
	}
	return nil
}

func appendNew(keys []key, k key) []key {
	if slices.Contains(keys, k) {
		return keys
	}
	return append(keys, k)
}

func configIndex(cfgs []config, k key) int {
	return slices.IndexFunc(cfgs, func(c config) bool { return key{c.name, c.c, c.contended} == k })
}
