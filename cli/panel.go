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

	"github.com/spf13/cobra"
	"golang.org/x/term"
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
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // the command said why
	}
	return err
}

// lineEditor reads lines with editing and history (golang.org/x/term)
// when its input is a terminal, plain lines otherwise.
type lineEditor struct {
	in   *bufio.Reader // not a terminal
	out  io.Writer
	fd   int // -1: not a terminal
	term *term.Terminal
}

func newLineEditor(in io.Reader, out io.Writer) *lineEditor {
	ed := &lineEditor{in: bufio.NewReader(in), out: out, fd: -1}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		ed.fd = int(f.Fd())
		ed.term = term.NewTerminal(struct {
			io.Reader
			io.Writer
		}{ctrlCDropsLine{f}, out}, "")
	}
	return ed
}

// readLine prints prompt and returns the next line, without its end. On a
// terminal, in raw mode only while it reads (the commands get it as they
// expect it), Ctrl-D on an empty line is io.EOF and Ctrl-C drops the line.
func (ed *lineEditor) readLine(prompt string) (string, error) {
	if ed.fd < 0 {
		fmt.Fprint(ed.out, prompt)
		line, err := ed.in.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return "", err
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	state, err := term.MakeRaw(ed.fd)
	if err != nil {
		return "", fmt.Errorf("panel: terminal: %w", err)
	}
	defer func() { _ = term.Restore(ed.fd, state) }()
	ed.term.SetPrompt(prompt)
	line, err := ed.term.ReadLine()
	if errors.Is(err, term.ErrPasteIndicator) {
		err = nil // a pasted line is a line
	}
	return line, err
}

// ctrlCDropsLine turns Ctrl-C into Ctrl-E Ctrl-U (end of line, erase to
// its start): x/term's ReadLine would take it for EOF and leave the panel.
type ctrlCDropsLine struct{ r io.Reader }

func (c ctrlCDropsLine) Read(p []byte) (int, error) {
	buf := make([]byte, max(len(p)/2, 1))
	n, err := c.r.Read(buf)
	out := p[:0]
	for _, b := range buf[:n] {
		if b == 3 {
			out = append(out, 5, 21)
			continue
		}
		out = append(out, b)
	}
	return len(out), err
}
