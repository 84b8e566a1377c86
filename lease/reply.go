package lease

import "fmt"

// reply reads a script's array reply without unchecked type assertions: a
// field of the wrong type or a missing one is recorded and reported by err.
type reply []any

func (r reply) str(i int) string {
	if i < len(r) {
		if s, ok := r[i].(string); ok {
			return s
		}
	}
	return ""
}

func (r reply) int(i int) int64 {
	if i < len(r) {
		if n, ok := r[i].(int64); ok {
			return n
		}
	}
	return 0
}

// err reports a malformed reply: one shorter than n, or whose fields after
// the status are not the strings and integers the scripts promise.
func (r reply) err(op string, n int) error {
	if len(r) < n {
		return r.unexpected(op)
	}
	for i := 1; i < len(r); i++ {
		switch r[i].(type) {
		case string, int64:
		default:
			return r.unexpected(op)
		}
	}
	return nil
}

func (r reply) unexpected(op string) error {
	return &BackendError{Op: op, Err: fmt.Errorf("unexpected script reply %v", []any(r))}
}

func (r reply) notHolder(name string) error {
	return &NotHolderError{Name: name, Holder: r.str(1), Fence: r.int(2), TTL: msDur(r.int(3))}
}
