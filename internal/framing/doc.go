// Package framing cuts the byte stream of a TCP connection into messages
// and builds outbound frames, as configured per listener (SPEC §6): lines
// ending in a delimiter, length-prefixed frames in the manner of Swoole's
// open_length_check, or a raw stream where every read is a message.
//
// The package is built for a gateway holding very many mostly idle
// connections. A [Decoder] is a few words and holds no buffer while no
// message is partially received: complete messages are handed to the
// caller straight out of the bytes just read (no copy), and only the tail of
// a message split across reads is copied into a buffer that the decoder
// owns until the message completes, then recycles. Every limit
// ([Config.MaxMessage], the length field) is enforced as soon as the bytes
// received prove it is crossed, before anything is buffered, so a length
// header claiming 4 GiB costs nothing.
//
// Messages are bytes: nothing is trimmed or translated. NUL bytes, spaces,
// CR, LF and trailing whitespace travel untouched in both directions.
//
// Typical use, one Decoder per connection:
//
//	tmpl, err := framing.NewDecoder(cfg) // once per listener: validates cfg
//	...
//	dec := *tmpl // per connection: a copy of a never-fed Decoder
//	for {
//		n, err := conn.Read(buf)
//		if ferr := dec.Feed(buf[:n], onMessage); ferr != nil {
//			// framing error (errors.Is(ferr, framing.ErrTooLarge), ...) or onMessage's error
//		}
//		...
//	}
//
// and for outbound messages frame, err = cfg.AppendFrame(frame[:0], msg).
package framing
