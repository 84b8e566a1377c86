package embedded_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/embedded"
	"github.com/redis/go-redis/v9"
)

func TestKeysExpireInRealTime(t *testing.T) {
	s, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rdb := redis.NewClient(s.Options())
	defer rdb.Close()
	ctx := context.Background()

	if err := rdb.Set(ctx, "k", "v", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, "k").Result(); n != 1 {
		t.Fatalf("got %d keys right after SET, want 1", n)
	}
	time.Sleep(40 * time.Millisecond)
	pttl, err := rdb.PTTL(ctx, "k").Result()
	if err != nil || pttl <= 0 || pttl > 60*time.Millisecond+embedded.Tick {
		t.Errorf("got PTTL %v (%v) 40ms into a 100ms TTL, want about 60ms", pttl, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		n, err := rdb.Exists(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key still exists 2s after its 100ms TTL: the clock does not advance")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseStopsServing(t *testing.T) {
	s, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	o.MaxRetries = -1
	rdb := redis.NewClient(o)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING before Close: %v, want PONG", err)
	}
	s.Close()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Errorf("PING on a connection opened before Close answered, want an error")
	}
	if c, err := s.Dial(ctx, "tcp", embedded.Addr); err == nil || !errors.Is(err, embedded.ErrClosed) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Dial after Close: got %v, want embedded.ErrClosed", err)
	}
}

// TestPubSubAndScriptsOverPipes checks what the lease package needs of a
// store that is served over in-process pipes: a script, and a PUBLISH that
// reaches a subscriber on a connection of its own.
func TestPubSubAndScriptsOverPipes(t *testing.T) {
	s, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rdb := redis.NewClient(s.Options())
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sub := rdb.Subscribe(ctx, "ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	n, err := rdb.Eval(ctx, "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('PUBLISH', 'ch', ARGV[1])", []string{"k"}, "v").Int()
	if err != nil || n != 1 {
		t.Fatalf("EVAL SET+PUBLISH: got %d (%v), want 1 subscriber reached", n, err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "v" {
		t.Fatalf("got message %v (%v), want payload v", msg, err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k: got %q (%v), want v", got, err)
	}
}

// TestPipelinesDoNotStall: a pipeline writes all its commands before it
// reads a reply. Over a bare net.Pipe that deadlocked once the commands
// outgrew one write (the store blocks writing the first reply while the
// client is still writing), so that `GET /v1/leases?limit=100` on the
// embedded store failed with "write pipe: i/o timeout".
func TestPipelinesDoNotStall(t *testing.T) {
	s, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o := s.Options()
	o.ReadTimeout, o.WriteTimeout = 2*time.Second, 2*time.Second
	rdb := redis.NewClient(o)
	defer rdb.Close()
	ctx := context.Background()
	for _, n := range []int{1, 10, 1000, 20000} {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range n {
				p.Set(ctx, "key:"+string(rune('a'+i%26)), "a value of some length to fill the pipe", 0)
			}
			return nil
		})
		if err != nil || len(cmds) != n {
			t.Fatalf("a pipeline of %d commands: got %d answers, %v", n, len(cmds), err)
		}
	}
	// Big values both ways.
	big := string(make([]byte, 1<<20))
	if err := rdb.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := rdb.Get(ctx, "big").Result(); err != nil || len(got) != len(big) {
		t.Fatalf("a 1 MiB value: got %d bytes, %v", len(got), err)
	}
}
