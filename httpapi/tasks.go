package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gatework/gatework/api"
)

// maxTaskWaitMs bounds taskWait's timeout_ms. taskWait is not bounded by
// the handler's Config.Timeout (http.timeout): its own timeout_ms governs.
const maxTaskWaitMs = 60_000

type taskParams struct {
	Payload       *string `json:"payload" oneof:"payload" doc:"the task payload as a UTF-8 string; exactly one of payload and payload_base64"`
	PayloadBase64 *string `json:"payload_base64" oneof:"payload" doc:"the task payload as standard base64 (RFC 4648, padded) for arbitrary bytes; exactly one of payload and payload_base64"`
}

// bytes is the payload.
func (p *taskParams) bytes() ([]byte, error) {
	m := messageParams{Message: p.Payload, MessageBase64: p.PayloadBase64}
	b, err := m.bytes()
	var he *httpError
	if errors.As(err, &he) {
		// Name the fields of this method.
		return nil, invalidRequest(`exactly one of "payload" and "payload_base64" is required (valid base64 for the latter)`)
	}
	return b, err
}

type taskWaitParams struct {
	taskParams
	TimeoutMs int `json:"timeout_ms" default:"5000" min:"1" max:"60000" doc:"how long to wait for the result, in milliseconds (at most 60000); it replaces the HTTP API's per-call timeout (http.timeout) for this call"`
}

// taskOutcome is taskWait's result.
type taskOutcome struct {
	// Result is the handler's result when it is UTF-8, else null.
	Result *string `json:"result"`
	// ResultBase64 is the handler's result, base64.
	ResultBase64 string `json:"result_base64"`
	// Error is the handler's error, or null.
	Error *string `json:"error"`
}

// taskSubmitter returns a's task submitter, or a 404 for an API without one.
func taskSubmitter(a api.API) (api.TaskSubmitter, error) {
	ts, ok := a.(api.TaskSubmitter)
	if !ok {
		return nil, newError(http.StatusNotFound, CodeUnknownMethod, "tasks are not served by this API")
	}
	return ts, nil
}

// taskMethod is task: Swoole's task, fire and forget.
func taskMethod() *method {
	return def("task", resultTaskID, "Submit a task to the task workers (Swoole task); returns its id at once. "+
		"The task runs at least once on some worker's OnTask; its result is not reported to the caller (use taskWait).",
		func(ctx context.Context, a api.API, p *taskParams) (reply, error) {
			ts, err := taskSubmitter(a)
			if err != nil {
				return reply{}, err
			}
			payload, err := p.bytes()
			if err != nil {
				return reply{}, err
			}
			id, err := ts.SubmitTask(ctx, payload, 0, nil)
			return reply{result: string(id)}, err
		})
}

// taskWaitMethod is taskWait: Swoole's taskwait.
func taskWaitMethod() *method {
	m := def("taskWait", resultTaskOutcome, "Submit a task and wait for its result (Swoole taskwait), at most timeout_ms; "+
		"the handler's error is in error. No task worker, or no result in time: 504 timeout.",
		func(ctx context.Context, a api.API, p *taskWaitParams) (reply, error) {
			ts, err := taskSubmitter(a)
			if err != nil {
				return reply{}, err
			}
			payload, err := p.bytes()
			if err != nil {
				return reply{}, err
			}
			if p.TimeoutMs < 1 || p.TimeoutMs > maxTaskWaitMs {
				return reply{}, fieldError("timeout_ms", "must be 1 to %d", maxTaskWaitMs)
			}
			b, err := ts.TaskWait(ctx, payload, time.Duration(p.TimeoutMs)*time.Millisecond)
			var te *api.TaskError
			if errors.As(err, &te) {
				msg := te.Message
				return reply{result: taskOutcome{Error: &msg}}, nil
			}
			if err != nil {
				return reply{}, err
			}
			out := taskOutcome{ResultBase64: base64.StdEncoding.EncodeToString(b)}
			if utf8.Valid(b) {
				s := string(b)
				out.Result = &s
			}
			return reply{result: out}, nil
		})
	m.maxWait = maxTaskWaitMs * time.Millisecond
	return m
}
