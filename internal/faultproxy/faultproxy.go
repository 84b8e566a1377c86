// Package faultproxy is a TCP proxy on loopback that the tests put between a
// client and redis-server (or a Leasehold server) to inject the faults of a
// real network path: it forwards, hangs (stops forwarding in both
// directions without closing anything, like a dead peer behind a firewall
// that drops packets), drops (resets every connection, as a peer that
// restarted does), or delays each chunk it forwards.
//
// It is test infrastructure: it listens on 127.0.0.1 only and every
// goroutine ends with Close.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does with the bytes it receives.
type Mode int

// Modes.
const (
	// Forward passes bytes through (after Delay, if set).
	Forward Mode = iota
	// Hang keeps every connection open and accepts new ones, but forwards
	// nothing in either direction until the mode changes: a request sent
	// now gets no answer and no error.
	Hang
	// Refuse resets every connection at once and every new one on accept.
	Refuse
)

// Proxy forwards connections from Addr to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond // signalled when mode or delay changes, or on Close
	mode  Mode
	delay time.Duration
	conns map[net.Conn]struct{}
	done  bool
	stop  chan struct{} // closed by Close: ends delays

	wg sync.WaitGroup
}

// New starts a proxy on a free loopback port that forwards to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port; clients connect here.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set switches the mode. Switching to Refuse resets every open connection.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	p.mode = m
	if m == Refuse {
		for c := range p.conns {
			reset(c)
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// SetDelay makes Forward wait d before passing on each chunk it reads.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Close stops the proxy, closes every connection and waits for its goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.done {
		close(p.stop)
	}
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.done || p.mode == Refuse {
			p.mu.Unlock()
			reset(c)
			continue
		}
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			reset(c)
			continue
		}
		if !p.track(c, up) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// track records the pair, or closes it when the proxy is done.
func (p *Proxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		a.Close()
		b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

// pipe copies src to dst, a chunk at a time, as the mode allows.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
		src.Close()
		dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.pass(dst, buf[:n]) {
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				reset(dst)
			}
			return
		}
	}
}

// pass waits while the proxy hangs, then forwards b after the delay; false
// when the connection must end.
func (p *Proxy) pass(dst net.Conn, b []byte) bool {
	p.mu.Lock()
	for !p.done && p.mode == Hang {
		p.cond.Wait()
	}
	done, mode, delay := p.done, p.mode, p.delay
	p.mu.Unlock()
	if done || mode == Refuse {
		return false
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.stop:
			return false
		}
	}
	_, err := dst.Write(b)
	return err == nil
}

// reset closes c with an RST instead of a FIN where it can.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
