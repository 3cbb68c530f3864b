package framing_test

import (
	"fmt"

	"github.com/gatework/gatework/internal/framing"
)

func ExampleDecoder() {
	dec, err := framing.NewDecoder(framing.Config{Delimiter: "\r\n"})
	if err != nil {
		panic(err)
	}
	onMessage := func(msg []byte) error {
		fmt.Printf("%q\n", msg) // msg is valid only during the call
		return nil
	}
	// Reads cut messages anywhere, even inside the delimiter.
	for _, read := range []string{"hel", "lo\r", "\n \x00 \r\n", "par"} {
		if err := dec.Feed([]byte(read), onMessage); err != nil {
			panic(err)
		}
	}
	fmt.Println("buffered:", dec.Buffered())
	// Output:
	// "hello"
	// " \x00 "
	// buffered: 3
}

func ExampleConfig_AppendFrame() {
	cfg := framing.Config{Kind: framing.KindLength, LengthSize: 2}
	frame, err := cfg.AppendFrame(nil, []byte("hi"))
	fmt.Printf("%q %v\n", frame, err)

	line := framing.Config{}
	_, err = line.AppendFrame(nil, []byte("two\nlines"))
	fmt.Println(err)
	// Output:
	// "\x00\x02hi" <nil>
	// framing: message contains the delimiter at byte 3
}
