package lease

import "time"

// SetAttemptHook makes every attempt of a waiting Acquire call f after it,
// until restore is called. Tests that use it must not run in parallel.
func SetAttemptHook(f func(name string, err error)) (restore func()) {
	testHookAttempted = f
	return func() { testHookAttempted = nil }
}

// SetHealthEvery changes, for Clients made after it, how soon a silent pub/sub connection is pinged.
func SetHealthEvery(d time.Duration) (restore func()) {
	old := healthEvery
	healthEvery = d
	return func() { healthEvery = old }
}

// PipelineLoneCalls sends every script through the autopipeliner of a
// Client made with Options.AutoPipeline, also when no other call is in
// flight, until restore is called. Tests that use it must not run in parallel.
func PipelineLoneCalls() (restore func()) {
	pipelineLoneCalls = true
	return func() { pipelineLoneCalls = false }
}

// Waiters is how many Acquire calls of c wait for name and have made
// their first attempt (so are queued in Redis, unless granted).
func (c *Client) Waiters(name string) int {
	s := c.sub
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, pc := range s.conns {
		if t := pc.topics[c.channel(name)]; t != nil {
			for _, w := range t.waiters {
				if !w.first.IsZero() {
					n++
				}
			}
		}
	}
	return n
}

// SetLinger changes, for Clients made after it, how long a channel stays
// subscribed after its last waiter left.
func SetLinger(d time.Duration) (restore func()) {
	old := subscriptionLinger
	subscriptionLinger = d
	return func() { subscriptionLinger = old }
}

// Conns is how many pub/sub connections c has open or opening.
func (c *Client) Conns() int {
	c.sub.mu.Lock()
	defer c.sub.mu.Unlock()
	return len(c.sub.conns)
}

// Channel is the channel on which a hand-over of name to a waiter of c is told.
func (c *Client) Channel(name string) string { return c.channel(name) }
