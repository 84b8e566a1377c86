package lease

import (
	"sync"
	"time"
)

// workers run a Client's waiters' attempts (see waitState.tryOnce) on at
// most maxAttempters reused goroutines: a call through go-redis is deep enough
// to double a goroutine's stack, and the goroutine of a waiting HTTP
// request, parked for the whole wait, must keep a small one; a new
// goroutine per attempt would leave a stack behind with each dead one. A
// worker without work for attempterIdle ends. Each Client has its own,
// so that a Redis that hangs holds up only its own Client's waiters. The
// zero value is ready to use.

const (
	maxAttempters = 8
	attempterIdle = 100 * time.Millisecond
)

type workers struct {
	jobs chan func() // to an idle worker that has been counted out of idle

	mu    sync.Mutex
	n     int      // workers running; guarded by mu
	idle  int      // idle workers no job was promised to; guarded by mu
	queue []func() // jobs waiting for a worker; guarded by mu
}

// run runs f on a worker and returns when it has returned.
func (p *workers) run(f func()) {
	done := make(chan struct{})
	job := func() {
		defer close(done)
		f()
	}
	p.mu.Lock()
	if p.jobs == nil {
		p.jobs = make(chan func())
	}
	switch {
	case p.idle > 0:
		p.idle--
		p.mu.Unlock()
		p.jobs <- job // an idle worker is bound to take it
	case p.n < maxAttempters:
		p.n++
		p.mu.Unlock()
		go p.work(job)
	default:
		p.queue = append(p.queue, job)
		p.mu.Unlock()
	}
	<-done
}

func (p *workers) work(job func()) {
	idle := time.NewTimer(attempterIdle)
	defer idle.Stop()
	for {
		job()
		p.mu.Lock()
		if len(p.queue) > 0 {
			job = p.queue[0]
			p.queue = p.queue[1:]
			p.mu.Unlock()
			continue
		}
		p.idle++
		p.mu.Unlock()
		idle.Reset(attempterIdle)
		select {
		case job = <-p.jobs:
			continue
		case <-idle.C:
		}
		p.mu.Lock()
		if p.idle > 0 {
			p.idle--
			p.n--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		job = <-p.jobs // every idle worker has a job promised: take one
	}
}
