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

// Waiters is how many Acquire calls of c wait for name.
func (c *Client) Waiters(name string) int {
	s := c.sub
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pc := range s.conns {
		if t := pc.topics[c.channel(name)]; t != nil {
			return len(t.queue)
		}
	}
	return 0
}

// Conns is how many pub/sub connections c has open or opening.
func (c *Client) Conns() int {
	c.sub.mu.Lock()
	defer c.sub.mu.Unlock()
	return len(c.sub.conns)
}
