package chaos

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// Store is the fenced downstream store that every holder writes to: it
// rejects any write whose fence is below the highest it has seen for the
// name, and records every write in the History. Child processes reach it
// over HTTP (ServeHTTP); clients in the test process call Write.
type Store struct {
	h    *History
	mu   sync.Mutex // guards high, and orders writes with their records
	high map[string]int64
}

// NewStore returns an empty store that records into h.
func NewStore(h *History) *Store { return &Store{h: h, high: map[string]int64{}} }

// Write applies a write of label's grant with fence to name, and reports
// whether the store accepted it.
func (s *Store) Write(name, label string, fence int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := fence >= s.high[name]
	if ok {
		s.high[name] = fence
	}
	s.h.AddWrite(Write{Name: name, Label: label, Fence: fence, At: Now(), Accepted: ok})
	return ok
}

// ServeHTTP serves child processes: POST /write?name=N&label=L&fence=F
// answers 200 when the write is accepted and 409 when it is rejected; POST
// /grant with a JSON Grant records a believed interval.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/write":
		q := r.URL.Query()
		fence, err := strconv.ParseInt(q.Get("fence"), 10, 64)
		if err != nil {
			http.Error(w, "bad fence", http.StatusBadRequest)
			return
		}
		if !s.Write(q.Get("name"), q.Get("label"), fence) {
			w.WriteHeader(http.StatusConflict)
		}
	case "/grant":
		var g Grant
		if err := json.NewDecoder(r.Body).Decode(&g); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.h.AddGrant(g)
	case "/op":
		var o Op
		if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.h.AddOp(o)
	default:
		http.NotFound(w, r)
	}
}
