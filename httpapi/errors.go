package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatework/gatework/api"
)

// Error codes: the "code" of an error body {"error":{"code":…,"message":…}}.
// They are stable; clients branch on them. The message is for humans and
// may change.
const (
	// CodeInvalidJSON (400): the body is not well-formed JSON (or not UTF-8).
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidRequest (400): the body is JSON but a field is unknown,
	// missing, of the wrong type or out of range; the message names it.
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidClient (400): a client id is malformed (api.ErrInvalidClient).
	CodeInvalidClient = "invalid_client"
	// CodeUnknownListener (400): listener or listeners names a listener
	// that no live gateway has (api.ErrUnknownListener).
	CodeUnknownListener = "unknown_listener"
	// CodeNotFound (404): the client is not connected (api.ErrNotFound), or
	// the path is not part of the API.
	CodeNotFound = "not_found"
	// CodeUnknownMethod (404): /api/<name> names no method.
	CodeUnknownMethod = "unknown_method"
	// CodeMethodNotAllowed (405): wrong HTTP method; the Allow header says
	// which are served.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeTooLarge (413): the body exceeds Config.MaxBodyBytes.
	CodeTooLarge = "too_large"
	// CodeUnsupportedMediaType (415): the Content-Type is not JSON. With no
	// token configured a method call must say Content-Type:
	// application/json; with tokens a missing Content-Type, and
	// application/x-www-form-urlencoded (what `curl -d` sends), are read
	// as JSON too.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeRequestTimeout (408): the request body did not arrive within
	// the server's body timeout; the connection is closed.
	CodeRequestTimeout = "request_timeout"
	// CodeTooManyConnections (503): the HTTP server holds its maximum of
	// connections; this one was accepted into the few kept for health
	// checks and metrics, and is closed after this answer. Retry-After
	// says when to try again.
	CodeTooManyConnections = "too_many_connections"
	// CodeUnauthorized (401): the bearer token is missing or matches no
	// configured token.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden (403): no token is configured and the caller is not on
	// a loopback address.
	CodeForbidden = "forbidden"
	// CodeForbiddenHost (403): no token is configured and the Host header
	// is not a loopback name (127.0.0.0/8, [::1], localhost): what a web
	// page whose DNS name was rebound to 127.0.0.1 sends.
	CodeForbiddenHost = "forbidden_host"
	// CodeForbiddenOrigin (403): no token is configured and an Origin
	// header names another origin than the API's own: a call from a web
	// page open in a browser on this machine.
	CodeForbiddenOrigin = "forbidden_origin"
	// CodeInsufficientScope (403): the token is valid but its scope does
	// not allow the method (a read token calling a send method, …).
	CodeInsufficientScope = "insufficient_scope"
	// CodeTimeout (504): the cluster did not answer in time (api.ErrTimeout
	// or the per-request deadline).
	CodeTimeout = "timeout"
	// CodeUnavailable (503): the API is closed (api.ErrClosed) or the
	// request was canceled.
	CodeUnavailable = "unavailable"
	// CodeOverloaded (503): a send was refused because a gateway's
	// outbound backlog is past gateway.max_queued_bytes (api.ErrOverloaded);
	// nothing was queued. Retry-After says when to try again.
	CodeOverloaded = "overloaded"
	// CodeInternal (500): anything else; details are logged, not answered.
	CodeInternal = "internal"
)

// httpError is an answer that is not a success: a status, a stable code and
// a message safe to show to the caller.
type httpError struct {
	status int
	code   string
	msg    string
	header map[string]string // extra response headers, e.g. Allow
}

func (e *httpError) Error() string { return e.code + ": " + e.msg }

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func newError(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// invalidRequest is a 400 invalid_request not tied to one field.
func invalidRequest(format string, args ...any) *httpError {
	return newError(http.StatusBadRequest, CodeInvalidRequest, format, args...)
}

// fieldError is a 400 invalid_request naming the request field at fault.
func fieldError(field, format string, args ...any) *httpError {
	return newError(http.StatusBadRequest, CodeInvalidRequest, "field %q: %s", field, fmt.Sprintf(format, args...))
}

func invalidJSON(format string, args ...any) *httpError {
	return newError(http.StatusBadRequest, CodeInvalidJSON, format, args...)
}

// classify maps an error from decoding or from the API to its answer.
// Errors of the API are matched with errors.Is against the api sentinels;
// anything unknown becomes 500 internal with a generic message (internal
// reports whether the caller should log the details).
func classify(err error) (he *httpError, internal bool) {
	if errors.As(err, &he) {
		return he, false
	}
	switch {
	case errors.Is(err, api.ErrUnknownListener):
		return newError(http.StatusBadRequest, CodeUnknownListener, "%s", err), false
	case errors.Is(err, api.ErrInvalidClient):
		return newError(http.StatusBadRequest, CodeInvalidClient, "%s", err), false
	case errors.Is(err, api.ErrNotFound):
		return newError(http.StatusNotFound, CodeNotFound, "%s", err), false
	case errors.Is(err, api.ErrTaskPayloadTooLarge):
		return newError(http.StatusRequestEntityTooLarge, CodeInvalidRequest, "%s", err), false
	case errors.Is(err, api.ErrNoTaskWorker), errors.Is(err, api.ErrTaskTimeout):
		return newError(http.StatusGatewayTimeout, CodeTimeout, "%s", err), false
	case errors.Is(err, api.ErrTaskLost), errors.Is(err, api.ErrTooManyTasks):
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "%s", err), false
	case errors.Is(err, api.ErrInvalidArgument):
		return newError(http.StatusBadRequest, CodeInvalidRequest, "%s", err), false
	case errors.Is(err, api.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusGatewayTimeout, CodeTimeout, "%s", err), false
	case errors.Is(err, api.ErrOverloaded):
		he := newError(http.StatusServiceUnavailable, CodeOverloaded, "%s", err)
		he.header = map[string]string{"Retry-After": "1"}
		return he, false
	case errors.Is(err, api.ErrClosed):
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "%s", err), false
	case errors.Is(err, context.Canceled):
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "request canceled"), false
	default:
		return newError(http.StatusInternalServerError, CodeInternal, "internal error"), true
	}
}
