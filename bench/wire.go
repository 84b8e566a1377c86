package main

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// cmdCounter counts the commands a client sends to Redis, on the wire: a
// go-redis hook whose dial hook wraps every connection the client opens, its
// pub/sub connections included, and counts the RESP arrays written to it.
// So SUBSCRIBE, UNSUBSCRIBE, PING and a new connection's HELLO and CLIENT
// SETINFO count like any command, each command of a pipeline as one, and a
// script run is one command (EVALSHA, plus EVAL after a NOSCRIPT).
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, n: &c.n}, nil
	}
}

func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// countingConn counts the commands written to a connection to Redis.
type countingConn struct {
	net.Conn
	n *atomic.Int64

	mu sync.Mutex // guards p; go-redis writes a connection from one goroutine at a time, but says so nowhere
	p  respCounter
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	cmds := c.p.feed(b[:n])
	c.mu.Unlock()
	if cmds > 0 {
		c.n.Add(cmds)
	}
	return n, err
}

// respCounter counts the commands in a stream of RESP requests fed to it in
// pieces of any size. A request is an array of bulk strings, "*N\r\n" then N
// times "$LEN\r\n" LEN bytes "\r\n", which is all go-redis writes; a line
// that starts otherwise counts as one inline command.
type respCounter struct {
	state   respState
	num     int64 // the number being read: the array's length or a string's
	args    int64 // bulk strings left in the current array
	skip    int64 // bytes left of the current string and its CRLF
	discard bool  // reading an inline command's line
}

type respState uint8

const (
	respStart  respState = iota // a new request
	respCount                   // digits of "*N"
	respBulk                    // "$" of the next argument
	respLength                  // digits of "$LEN"
	respData                    // the argument's bytes and CRLF
)

// feed reads b and returns how many requests began in it.
func (r *respCounter) feed(b []byte) (cmds int64) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch r.state {
		case respStart:
			switch {
			case r.discard:
				r.discard = c != '\n'
			case c == '*':
				cmds++
				r.state, r.num = respCount, 0
			case c != '\r' && c != '\n':
				cmds++ // an inline command: skip its line
				r.discard = true
			}
		case respCount, respLength:
			switch {
			case c >= '0' && c <= '9':
				r.num = r.num*10 + int64(c-'0')
			case c == '\n':
				if r.state == respCount {
					r.args = r.num
					r.state = respBulk
				} else {
					r.skip = r.num + 2
					r.state = respData
				}
			}
		case respBulk:
			if c == '$' {
				r.state, r.num = respLength, 0
			}
		case respData:
			k := min(r.skip, int64(len(b)-i))
			r.skip -= k
			i += int(k) - 1
			if r.skip == 0 {
				r.args--
				r.state = respBulk
			}
		}
		if r.state == respBulk && r.args <= 0 {
			r.state = respStart
		}
	}
	return cmds
}
