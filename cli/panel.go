package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// panelCommands are the commands of the control panel: name, arguments it
// accepts, help.
var panelCommands = []struct {
	name string
	args []string
	help string
}{
	{"help", nil, "this list"},
	{"start", []string{"-d"}, "start the node (-d: in the background; in the foreground, Ctrl-C stops it)"},
	{"restart", []string{"-d"}, "stop, then start"},
	{"reload", nil, "replace the worker processes with the binary on disk, losing nothing"},
	{"stop", []string{"-f"}, "stop gracefully (-f: kill at once)"},
	{"status", []string{"--json"}, "every process of the node"},
	{"clear", nil, "clear the screen"},
	{"exit", nil, "leave the panel (the node keeps running)"},
}

// maxHistory bounds the panel's history; the oldest line goes first.
const maxHistory = 200

// panel runs the interactive control panel on stdin and stdout until exit
// or EOF. Node commands run as `<binary> <command>` with the terminal, as
// the one-shot commands do.
func (r *runner) panel(cmd *cobra.Command) error {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "gatework %s control panel. Type help for the commands, exit to leave.\n", version())
	ed := newLineEditor(cmd.InOrStdin(), out)
	for {
		line, err := ed.readLine("> ")
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(out)
			return nil
		}
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "help", "?":
			for _, c := range panelCommands {
				name := c.name
				for _, a := range c.args {
					name += " [" + a + "]"
				}
				fmt.Fprintf(out, "  %-18s %s\n", name, c.help)
			}
		case "exit", "quit":
			return nil
		case "clear":
			fmt.Fprint(out, "\x1b[H\x1b[2J")
		default:
			if err := r.panelRun(ed, f); err != nil {
				fmt.Fprintln(out, err)
			}
		}
	}
}

// panelRun runs a node command of the panel as a child process.
func (r *runner) panelRun(ed *lineEditor, f []string) error {
	known := false
	for _, c := range panelCommands {
		if c.name != f[0] || c.name == "help" || c.name == "clear" || c.name == "exit" {
			continue
		}
		known = true
		for _, a := range f[1:] {
			ok := false
			for _, allowed := range c.args {
				ok = ok || a == allowed
			}
			if !ok {
				return fmt.Errorf("%s: unknown argument %q (type help)", f[0], a)
			}
		}
	}
	if !known {
		return fmt.Errorf("unknown command %q (type help)", f[0])
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := f
	if p := r.configPath; p != "" {
		args = append([]string{"-c", p}, f...)
	}
	c := exec.Command(exe, args...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, ed.out, ed.out
	// Ctrl-C reaches the command (a foreground start), not the panel.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	ed.cooked()
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // the command said why
	}
	return err
}

// lineEditor reads lines with editing and history when its input is a
// terminal, plain lines otherwise.
type lineEditor struct {
	in      *bufio.Reader
	out     io.Writer
	fd      int // -1: not a terminal
	restore func()
	history []string
}

func newLineEditor(in io.Reader, out io.Writer) *lineEditor {
	ed := &lineEditor{in: bufio.NewReader(in), out: out, fd: -1}
	if f, ok := in.(*os.File); ok {
		if restore, ok := makeRaw(int(f.Fd())); ok {
			restore()
			ed.fd = int(f.Fd())
		}
	}
	return ed
}

// raw puts the terminal in raw mode; cooked restores it.
func (ed *lineEditor) raw() {
	if ed.fd >= 0 && ed.restore == nil {
		ed.restore, _ = makeRaw(ed.fd)
	}
}

func (ed *lineEditor) cooked() {
	if ed.restore != nil {
		ed.restore()
		ed.restore = nil
	}
}

// readLine prints prompt and returns the next line, without its end.
func (ed *lineEditor) readLine(prompt string) (string, error) {
	if ed.fd < 0 {
		fmt.Fprint(ed.out, prompt)
		line, err := ed.in.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	ed.raw()
	defer ed.cooked()
	var buf []rune
	pos, hist := 0, len(ed.history)
	redraw := func() {
		s := "\r" + prompt + string(buf) + "\x1b[K"
		if back := len(buf) - pos; back > 0 {
			s += fmt.Sprintf("\x1b[%dD", back)
		}
		fmt.Fprint(ed.out, s)
	}
	redraw()
	for {
		r, _, err := ed.in.ReadRune()
		if err != nil {
			return "", err
		}
		switch r {
		case '\r', '\n':
			fmt.Fprint(ed.out, "\r\n")
			line := string(buf)
			if strings.TrimSpace(line) != "" && (len(ed.history) == 0 || ed.history[len(ed.history)-1] != line) {
				ed.history = append(ed.history, line)
				if len(ed.history) > maxHistory {
					ed.history = ed.history[1:]
				}
			}
			return line, nil
		case 3: // Ctrl-C: drop the line
			fmt.Fprint(ed.out, "^C\r\n")
			buf, pos = nil, 0
		case 4: // Ctrl-D: leave on an empty line
			if len(buf) == 0 {
				return "", io.EOF
			}
		case 127, 8: // backspace
			if pos > 0 {
				buf = append(buf[:pos-1], buf[pos:]...)
				pos--
			}
		case 1: // Ctrl-A
			pos = 0
		case 5: // Ctrl-E
			pos = len(buf)
		case 21: // Ctrl-U
			buf, pos = buf[pos:], 0
		case 12: // Ctrl-L
			fmt.Fprint(ed.out, "\x1b[H\x1b[2J")
		case 27: // escape sequences: arrows, home, end, delete
			b1, _, _ := ed.in.ReadRune()
			if b1 != '[' && b1 != 'O' {
				break
			}
			b2, _, _ := ed.in.ReadRune()
			switch b2 {
			case 'A', 'B':
				if b2 == 'A' && hist > 0 {
					hist--
				} else if b2 == 'B' && hist < len(ed.history) {
					hist++
				}
				buf = nil
				if hist < len(ed.history) {
					buf = []rune(ed.history[hist])
				}
				pos = len(buf)
			case 'C':
				pos = min(pos+1, len(buf))
			case 'D':
				pos = max(pos-1, 0)
			case 'H':
				pos = 0
			case 'F':
				pos = len(buf)
			case '3':
				if t, _, _ := ed.in.ReadRune(); t == '~' && pos < len(buf) {
					buf = append(buf[:pos], buf[pos+1:]...)
				}
			}
		default:
			if r >= ' ' && r != utf8.RuneError {
				buf = append(buf[:pos], append([]rune{r}, buf[pos:]...)...)
				pos++
			}
		}
		redraw()
	}
}
