package lease

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// script is one of package lua's scripts, ready to run on the hot path.
//
// run does what redis.Script.Run does (EVALSHA, then EVAL when Redis answers
// NOSCRIPT after a restart, failover or SCRIPT FLUSH) but builds the command
// in a single slice whose head (command name, SHA, number of keys) was boxed
// once. redis.Script.Run copies keys and arguments into a new slice and boxes
// the name and SHA again on every call: four allocations more per call, more
// than any other part of an Acquire or Release.
type script struct {
	*redis.Script     // Load, Hash, EvalSha: for LoadScripts, Ping and pipelines
	src, sha      any // the source and the SHA, boxed once
	keys          int // how many of a call's values are keys
}

func newScript(src string, keys int) *script {
	s := redis.NewScript(src)
	return &script{Script: s, src: src, sha: s.Hash(), keys: keys}
}

// run runs the script with s.keys keys followed by the script's arguments,
// given in one list.
func (s *script) run(ctx context.Context, rdb redis.UniversalClient, keysAndArgs ...any) *redis.Cmd {
	args := make([]any, 3, 3+len(keysAndArgs))
	args[0], args[1], args[2] = "evalsha", s.sha, s.keys
	args = append(args, keysAndArgs...)
	cmd := s.process(ctx, rdb, args)
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") { // HasErrorPrefix allocates
		args[0], args[1] = "eval", s.src
		cmd = s.process(ctx, rdb, args)
	}
	return cmd
}

func (s *script) process(ctx context.Context, rdb redis.UniversalClient, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3) // Cluster routes by the first key
	_ = rdb.Process(ctx, cmd)
	return cmd
}
