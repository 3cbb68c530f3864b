package httpapi

import (
	"net/http"
	"sync"
)

// Stats counts a Handler's requests since New. The maps are bounded: the
// method label is a canonical method name, "listMethods", "openAPI" or
// "other" (unknown paths and methods), and statuses are the few the
// handler answers.
type Stats struct {
	// Calls counts answered requests by method and HTTP status.
	Calls map[Call]uint64
	// AuthFailures counts refused requests by reason: AuthMissing,
	// AuthWrong, AuthScope, AuthNotLoopback. Require counts here too.
	AuthFailures map[string]uint64
}

// Call is a key of Stats.Calls.
type Call struct {
	Method string // canonical method name, "listMethods", "openAPI" or "other"
	Status int    // HTTP status answered
}

// Labels of requests that are not method calls.
const (
	callListing = "listMethods"
	callOpenAPI = "openAPI"
	callOther   = "other"
)

// handlerStats is behind Stats. One short lock per request.
type handlerStats struct {
	mu    sync.Mutex
	calls map[Call]uint64
	auth  map[string]uint64
}

func (s *handlerStats) called(method string, status int) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = make(map[Call]uint64)
	}
	s.calls[Call{Method: method, Status: status}]++
	s.mu.Unlock()
}

func (s *handlerStats) authFailed(reason string) {
	s.mu.Lock()
	if s.auth == nil {
		s.auth = make(map[string]uint64)
	}
	s.auth[reason]++
	s.mu.Unlock()
}

// Stats returns a copy of the handler's counters. Safe for concurrent use.
func (h *Handler) Stats() Stats {
	h.stats.mu.Lock()
	defer h.stats.mu.Unlock()
	st := Stats{
		Calls:        make(map[Call]uint64, len(h.stats.calls)),
		AuthFailures: make(map[string]uint64, len(h.stats.auth)),
	}
	for k, v := range h.stats.calls {
		st.Calls[k] = v
	}
	for k, v := range h.stats.auth {
		st.AuthFailures[k] = v
	}
	return st
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
