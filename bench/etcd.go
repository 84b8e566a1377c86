package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// etcdInstall is what to do when etcd is not on PATH.
const etcdInstall = "Debian/Ubuntu: sudo apt-get install -y etcd-server"

// startEtcd starts a one-member etcd from PATH on free loopback ports, its
// data in a new directory under dir (on disk, as etcd is run: every write is
// fsynced), and waits until its /health answers 200. It returns an error
// wrapping exec.ErrNotFound when etcd is not on PATH.
func startEtcd(ctx context.Context, dir string) (srv *server, version string, err error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, "", err
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return nil, "", fmt.Errorf("etcd --version: %w", err)
	}
	version, _, _ = strings.Cut(string(out), "\n")
	version = strings.TrimSpace(strings.TrimPrefix(version, "etcd Version:"))

	client, err1 := freePort()
	peer, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, "", err
	}
	data, err := os.MkdirTemp(dir, "etcd-")
	if err != nil {
		return nil, "", err
	}
	clientURL, peerURL := "http://"+client, "http://"+peer
	args := []string{
		"--name", "bench",
		"--data-dir", data,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "bench=" + peerURL, "--initial-cluster-state", "new",
		"--initial-cluster-token", "leasehold-bench",
		"--logger", "zap", "--log-level", "warn",
	}
	srv, err = startProcess(ctx, "etcd", bin, args, filepath.Join(dir, "etcd.log"), clientURL, clientURL+"/health")
	return srv, version, err
}

// openEtcd drives etcd's concurrency.Mutex (go.etcd.io/etcd/client/v3) at
// endpoint, as an etcd user locks: one client and one Session (a lease of
// leaseTTL, kept alive in the background), Lock then Unlock. Contended,
// Lock waits (watching the key of the waiter before it) for at most wait;
// uncontended, TryLock. Commands sent are the gRPC requests: unary calls and
// each message sent on a stream (watch creations and cancellations, lease
// keep-alives).
func openEtcd(ctx context.Context, endpoint string, wait time.Duration) (*driver, error) {
	sent := &cmdCounter{}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(sent.unaryInterceptor),
			grpc.WithChainStreamInterceptor(sent.streamInterceptor),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	// NewSession has no context of its own; bound its lease grant by ctx.
	type made struct {
		s   *concurrency.Session
		err error
	}
	ch := make(chan made, 1)
	go func() {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(leaseTTL/time.Second)))
		ch <- made{s, err}
	}()
	var sess *concurrency.Session
	select {
	case m := <-ch:
		sess, err = m.s, m.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		cli.Close() // also ends a NewSession still running
		return nil, fmt.Errorf("etcd session: %w", err)
	}
	cycle := func(ctx context.Context, name string, st *stamps) error {
		m := concurrency.NewMutex(sess, "/leasehold-bench/"+name)
		if wait > 0 {
			lockCtx, cancel := context.WithTimeout(ctx, wait)
			err := m.Lock(lockCtx)
			cancel()
			if err != nil {
				if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
					return errNotGranted
				}
				return err
			}
		} else if err := m.TryLock(ctx); err != nil {
			if errors.Is(err, concurrency.ErrLocked) {
				return errNotGranted
			}
			return err
		}
		st.mark()
		return m.Unlock(ctx)
	}
	return &driver{
		worker: func() cycleFunc { return cycle },
		sent:   sent,
		close: func() {
			sess.Close() // revokes the session's lease, within its TTL at most
			cli.Close()
		},
	}, nil
}

func (c *cmdCounter) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.n.Add(1)
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *cmdCounter) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &countingStream{ClientStream: s, c: c}, nil
}

// countingStream counts the messages sent on a gRPC client stream.
type countingStream struct {
	grpc.ClientStream
	c *cmdCounter
}

func (s *countingStream) SendMsg(m any) error {
	s.c.n.Add(1)
	return s.ClientStream.SendMsg(m)
}
