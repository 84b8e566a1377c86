package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// The classes on Redis topologies other than one server: Sentinel,
// Redlock and Cluster. Each has three SDK clients (go-redis with default
// options) and one `leasehold serve` with an HTTP client; `leasehold run`
// talks to one Redis URL only, so it is not part of them.

const masterName = "chaos"

func (e *env) httpWorker(lin func(string) bool, backend ...string) {
	s := startServer(e.t, backend...)
	e.servers = append(e.servers, s)
	e.addWorker("http0", httpapi.NewClient(s.url(), nil), lin, e.defaults(e.names...))
}

// sentinel: a master, its replica and a Sentinel that fails over between them.
func (e *env) sentinel() {
	m := redistest.Start(e.t)
	r := redistest.Start(e.t, "--replicaof", "127.0.0.1", port(m.Addr()))
	e.nodes = []*redistest.Server{m, r}
	s := redistest.StartSentinel(e.t, m, masterName)
	e.redis = s // the nemesis talks to the Sentinel
	e.names = []string{"n0", "n1"}
	lin := e.lin(e.names...)
	for i := 0; i < 3; i++ {
		rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: masterName, SentinelAddrs: []string{s.Addr()}})
		e.t.Cleanup(func() { rdb.Close() })
		e.addWorker(fmt.Sprintf("sdk%d", i), lease.New(rdb, nil), lin, e.defaults(e.names...))
	}
	e.httpWorker(lin, "--redis-sentinel", s.Addr(), "--sentinel-master", masterName)
	o := observerOptions("")
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: masterName, SentinelAddrs: []string{s.Addr()},
		ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, DialTimeout: o.DialTimeout, ContextTimeoutEnabled: true, MaxRetries: -1})
	e.observer(rdb, lin)
	// Wait until the Sentinel knows the replica, or it cannot fail over.
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer sc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		reps, err := sc.Replicas(context.Background(), masterName).Result()
		if err == nil && len(reps) > 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the Sentinel found no replica within 20s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// failover makes the Sentinel promote the replica and waits until the
// Sentinel names it master and the old master is a replica (until then it
// takes writes that the failover loses). The next failover waits until the
// old master has synced (Sentinel answers NOGOODSLAVE before).
func failover(e *env) (chaos.Fault, bool) {
	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: e.redis.Addr()})
	defer sc.Close()
	before, err := sc.GetMasterAddrByName(ctx, masterName).Result()
	if err != nil {
		e.t.Errorf("sentinel: %v", err)
		return chaos.Fault{}, false
	}
	f := chaos.Fault{Kind: "sentinel-failover", Target: strings.Join(before, ":"), Start: chaos.Now(), DataLoss: true}
	if err := sc.Failover(ctx, masterName).Err(); err != nil {
		return chaos.Fault{}, false // NOGOODSLAVE while the replica syncs: try later
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		now, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		if err == nil && strings.Join(now, ":") != f.Target && demoted(f.Target) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.End = chaos.Now()
	return f, true
}

// demoted reports whether the Redis at addr is a replica now, so it
// accepts no more writes that the failover would lose.
func demoted(addr string) bool {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	info, err := rdb.Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(info, "role:slave")
}

// redlock: three independent masters.
func (e *env) redlock() {
	for i := 0; i < 3; i++ {
		e.nodes = append(e.nodes, redistest.Start(e.t))
	}
	e.names = []string{"n0", "n1"}
	lin := e.lin(e.names...)
	var urls []string
	for _, n := range e.nodes {
		urls = append(urls, n.URL())
	}
	mk := func(o func(addr string) *redis.Options) *lease.Redlock {
		var rdbs []redis.UniversalClient
		for _, n := range e.nodes {
			rdb := redis.NewClient(o(n.Addr()))
			e.t.Cleanup(func() { rdb.Close() })
			rdbs = append(rdbs, rdb)
		}
		// MaxTTL bounds the restart delay (a master that restarted, or is
		// seen first, counts toward no grant until the leases it may have
		// forgotten expired): the workload's TTLs are 1s.
		rl, err := lease.NewRedlock(rdbs, &lease.Options{MaxTTL: redlockMaxTTL})
		if err != nil {
			e.t.Fatal(err)
		}
		return rl
	}
	for i := 0; i < 3; i++ {
		e.addWorker(fmt.Sprintf("sdk%d", i), mk(func(a string) *redis.Options { return &redis.Options{Addr: a} }), lin, e.defaults(e.names...))
	}
	e.httpWorker(lin, "--redlock", strings.Join(urls, ","), "--max-ttl", redlockMaxTTL.String())
	e.obs = &recorder{inner: mk(observerOptions), h: e.h, client: "observer", lin: lin}
	time.Sleep(redlockMaxTTL + 100*time.Millisecond) // new masters sit out the restart delay
}

// redlockMaxTTL is the Redlock clients' and server's MaxTTL, and so their
// restart delay.
const redlockMaxTTL = 2 * time.Second

// redlockFault pauses one master past the TTL and restarts another empty
// meanwhile. The restart loses data: a grant whose quorum held the
// restarted master has no quorum left, so the register may lose it before
// its TTL (its holder may hear not_found early). Overlaps and fences are
// still judged strictly: the class does not excuse data loss.
func redlockFault(e *env) (chaos.Fault, bool) {
	i := rand.IntN(3)
	j := (i + 1 + rand.IntN(2)) % 3
	f := chaos.Fault{Kind: "redlock-pause-restart", Target: fmt.Sprintf("pause %d, restart %d", i, j), Start: chaos.Now(), DataLoss: true}
	e.nodes[i].Pause()
	time.Sleep(e.ttl / 2)
	if err := e.nodes[j].Restart(); err != nil {
		e.t.Errorf("restart a master: %v", err)
	}
	time.Sleep(between(e.ttl, e.ttl*3/2))
	e.nodes[i].Resume()
	f.End = chaos.Now()
	return f, true
}

// cluster: three masters, the names spread over them.
func (e *env) cluster() {
	c := redistest.StartCluster(e.t, 3)
	e.nodes = c.Nodes
	e.names = []string{"n0", "n1", "n2"}
	lin := e.lin(e.names...)
	for i := 0; i < 3; i++ {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		e.t.Cleanup(func() { rdb.Close() })
		e.addWorker(fmt.Sprintf("sdk%d", i), lease.New(rdb, nil), lin, e.defaults(e.names...))
	}
	e.httpWorker(lin, "--redis-cluster", strings.Join(c.Addrs(), ","))
	o := observerOptions("")
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		DialTimeout: o.DialTimeout, ContextTimeoutEnabled: true, MaxRetries: -1})
	e.observer(rdb, lin)
}

// clusterFault alternates between migrating the slot of a name to another
// master (while its lease is held and waited on) and restarting a master
// empty.
func clusterFault(e *env) (chaos.Fault, bool) {
	if rand.IntN(2) == 0 {
		n := e.nodes[rand.IntN(len(e.nodes))]
		f := chaos.Fault{Kind: "cluster-restart", Target: n.Addr(), Start: chaos.Now(), DataLoss: true}
		if err := n.Restart(); err != nil {
			e.t.Errorf("restart a cluster master: %v", err)
		}
		waitClusterOK(e)
		f.End = chaos.Now()
		return f, true
	}
	name := e.names[rand.IntN(len(e.names))]
	f := chaos.Fault{Kind: "slot-migration", Target: name, Start: chaos.Now()}
	if err := migrate(e, keys(name)[0]); err != nil {
		e.t.Logf("migrate %s: %v", name, err)
	}
	f.End = chaos.Now()
	return f, true
}

func nodeClient(n *redistest.Server) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr()})
}

func waitClusterOK(e *env) {
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range e.nodes {
		rdb := nodeClient(n)
		for time.Now().Before(deadline) {
			info, err := rdb.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		rdb.Close()
	}
}

// migrate moves key's slot to another master, keys and all, as
// redis-cli --cluster reshard does.
func migrate(e *env, key string) error {
	ctx := context.Background()
	rdbs := make([]*redis.Client, len(e.nodes))
	ids := make([]string, len(e.nodes))
	for i, n := range e.nodes {
		rdbs[i] = nodeClient(n)
		defer rdbs[i].Close()
		id, err := rdbs[i].Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			return err
		}
		ids[i] = id
	}
	slot, err := rdbs[0].ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return err
	}
	src := -1
	slots, err := rdbs[0].ClusterSlots(ctx).Result()
	if err != nil {
		return err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			for i, id := range ids {
				if s.Nodes[0].ID == id {
					src = i
				}
			}
		}
	}
	if src < 0 {
		return fmt.Errorf("no master owns slot %d", slot)
	}
	dst := (src + 1 + rand.IntN(len(e.nodes)-1)) % len(e.nodes)
	if err := rdbs[dst].Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]).Err(); err != nil {
		return err
	}
	if err := rdbs[src].Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]).Err(); err != nil {
		return err
	}
	for {
		ks, err := rdbs[src].ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		if err != nil {
			return err
		}
		if len(ks) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", port(e.nodes[dst].Addr()), "", 0, 5000, "KEYS"}
		for _, k := range ks {
			args = append(args, k)
		}
		if err := rdbs[src].Do(ctx, args...).Err(); err != nil {
			return err
		}
	}
	for i := range rdbs {
		if err := rdbs[i].Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]).Err(); err != nil {
			return err
		}
	}
	return nil
}

// topoClasses are the classes on Sentinel, Redlock and Cluster.
var topoClasses = []struct {
	class
	world func(e *env)
}{
	// A failover can lose a release or a renewal as well as a grant (the
	// replica lags): a released lease comes back, a renewed one expires
	// early. The register model cannot say that, so this class is judged
	// without it, by fences, the store, orphans and waiting.
	{class{name: "sentinel-failover", nemesis: failover, tweak: excuseDataLoss, noLin: true}, (*env).sentinel},
	{class{name: "redlock", nemesis: redlockFault, tweak: func(c *chaos.Config) {
		// A failed quorum answers the holder of a minority of masters
		// (even one whose lease a quorum no longer has), and a read answers
		// not_found when no quorum agrees: those answers are not the
		// register's, so only the changes are checked.
		c.LinWritesOnly = true
	}}, (*env).redlock},
	{class{name: "cluster", nemesis: clusterFault, tweak: excuseDataLoss}, (*env).cluster},
}

// TestChaosTopologies runs the Sentinel, Redlock and Cluster classes.
func TestChaosTopologies(t *testing.T) {
	for _, c := range topoClasses {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, time.Second)
			c.world(e)
			judge(t, e, c.class)
		})
	}
}
