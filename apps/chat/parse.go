package chat

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxName is the longest name or room name accepted, in bytes.
const MaxName = 32

// kind is what a line asks for.
type kind int

const (
	kindEmpty   kind = iota // blank line: ignored
	kindSay                 // text for the current room
	kindName                // /name <name>
	kindJoin                // /join <room>
	kindLeave               // /leave
	kindMsg                 // /msg <name> <text>
	kindWho                 // /who
	kindRooms               // /rooms
	kindHelp                // /help
	kindQuit                // /quit
	kindUnknown             // any other /word
)

// command is one parsed line.
type command struct {
	kind kind
	word string // the command word as typed, for kindUnknown ("/foo")
	arg  string // the name of /name and /msg, the room of /join
	text string // what is said (kindSay) or sent privately (kindMsg)
}

// parse reads one line of the chat protocol. A trailing "\r\n", "\n" or
// "\r" is dropped (telnet and nc send them), line breaks inside the text
// become spaces (so that every line the chat sends is one line on a TCP
// line listener) and invalid UTF-8 is replaced by U+FFFD. A line that
// starts with "//" says the rest, starting with "/". The error is a usage
// message for the user.
func parse(line string) (command, error) {
	line = strings.ToValidUTF8(strings.TrimRight(line, "\r\n"), "\uFFFD")
	line = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(line)
	if strings.TrimSpace(line) == "" {
		return command{kind: kindEmpty}, nil
	}
	if strings.HasPrefix(line, "//") {
		return command{kind: kindSay, text: line[1:]}, nil
	}
	if !strings.HasPrefix(line, "/") {
		return command{kind: kindSay, text: line}, nil
	}
	word, rest := cutSpace(line)
	switch strings.ToLower(word) {
	case "/name", "/nick":
		if err := checkName("name", rest); err != nil {
			return command{}, fmt.Errorf("%w; usage: /name <name>", err)
		}
		return command{kind: kindName, arg: rest}, nil
	case "/join":
		room := strings.TrimPrefix(rest, "#")
		if err := checkName("room", room); err != nil {
			return command{}, fmt.Errorf("%w; usage: /join <room>", err)
		}
		return command{kind: kindJoin, arg: room}, nil
	case "/msg":
		to, text := cutSpace(rest)
		if to == "" || text == "" {
			return command{}, errors.New("usage: /msg <name> <text>")
		}
		if err := checkName("name", to); err != nil {
			return command{}, fmt.Errorf("%w; usage: /msg <name> <text>", err)
		}
		return command{kind: kindMsg, arg: to, text: text}, nil
	case "/leave", "/part":
		return command{kind: kindLeave}, nil
	case "/who":
		return command{kind: kindWho}, nil
	case "/rooms", "/list":
		return command{kind: kindRooms}, nil
	case "/help", "/?":
		return command{kind: kindHelp}, nil
	case "/quit", "/exit":
		return command{kind: kindQuit}, nil
	default:
		return command{kind: kindUnknown, word: word}, nil
	}
}

// cutSpace splits s at its first white space; after is trimmed.
func cutSpace(s string) (before, after string) {
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// checkName accepts 1 to MaxName bytes of letters, digits, marks and
// punctuation: no spaces, no control characters, and no leading '/' or
// '#' (so that names read unambiguously in the chat's output).
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("a %s is needed", what)
	case len(s) > MaxName:
		return fmt.Errorf("a %s has at most %d bytes", what, MaxName)
	case s[0] == '/' || s[0] == '#':
		return fmt.Errorf("a %s cannot start with %q", what, s[0])
	case !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError):
		return fmt.Errorf("a %s must be valid UTF-8", what)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsGraphic(r) {
			return fmt.Errorf("a %s cannot contain spaces or control characters", what)
		}
	}
	return nil
}
