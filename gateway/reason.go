package gateway

// CloseReason says why a connection closed. It is reported to OnClose
// handlers, counted in Stats and mapped to a WebSocket close code.
type CloseReason uint8

// The close reasons.
const (
	ReasonClientClosed    CloseReason = iota // the client closed or the connection broke
	ReasonCloseRequested                     // CloseClient from the API or a handler
	ReasonMessageTooLarge                    // an inbound message over max_message
	ReasonInvalidUTF8                        // a WebSocket text message that is not UTF-8
	ReasonProtocolError                      // a framing or protocol violation
	ReasonSlowConsumer                       // the outbound queue went over max_queue_bytes
	ReasonEventBacklog                       // too many events waiting for a worker
	ReasonRejected                           // a handler rejected the client
	ReasonShutdown                           // the gateway is stopping
	ReasonThrottled                          // over a message rate limit with a close policy
	ReasonIdleTimeout                        // nothing received for idle_timeout
	ReasonEventFailed                        // an event batch was dead-lettered (DeadLetterPolicy close)
	ReasonConfirmTimeout                     // a delay_receive connection not confirmed within confirm_timeout
	ReasonDecodeError                        // a message the listener's codec could not decode (decode_error close)
	reasonCount
)

var reasonNames = [reasonCount]string{
	"client_closed", "close_requested", "message_too_large", "invalid_utf8",
	"protocol_error", "slow_consumer", "event_backlog", "rejected", "shutdown",
	"throttled",
	"idle_timeout",
	"event_failed",
	"confirm_timeout",
	"decode_error",
}

// String returns the snake_case name used in logs, metrics and events.
func (r CloseReason) String() string {
	if r >= reasonCount {
		return "unknown"
	}
	return reasonNames[r]
}

// wsCode returns the WebSocket close code the gateway sends for r.
func (r CloseReason) wsCode() int {
	switch r {
	case ReasonMessageTooLarge:
		return 1009
	case ReasonInvalidUTF8, ReasonDecodeError:
		return 1007
	case ReasonProtocolError:
		return 1002
	case ReasonSlowConsumer, ReasonThrottled:
		return 1008
	case ReasonEventBacklog:
		return 1013
	case ReasonShutdown, ReasonIdleTimeout, ReasonConfirmTimeout:
		return 1001
	case ReasonEventFailed:
		return 1011
	default:
		return 1000
	}
}
