package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// maxConsoleOutput bounds what `console -c -o json` reads of a session
// before it splits it by command.
const maxConsoleOutput = 32 << 20

func (a *app) consoleCmd() *cobra.Command {
	var cmds []string
	cmd := &cobra.Command{
		Use:   "console ID",
		Short: "Open a Cal's console: status, tiers, logs, reflect, spawn, help (-c runs commands and exits)",
		Long: `Open a Cal's console (its CLI server) and copy it to the terminal; -c runs
the given commands and exits. With -o json (which needs -c) it prints one
document: the Cal and, per command, the console's output.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.json() && len(cmds) == 0 {
				return errors.New("-o json: an interactive console has no JSON form; give the commands with -c")
			}
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			conn, err := c.Console(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer conn.Close()
			go func() {
				if len(cmds) > 0 {
					io.WriteString(conn, strings.Join(cmds, "\n")+"\nexit\n")
					return
				}
				// Input ends, or the session did: either way the console
				// is told to exit, and the output below says how it went.
				_, _ = io.Copy(conn, os.Stdin)
				io.WriteString(conn, "exit\n")
			}()
			if a.json() {
				b, err := io.ReadAll(io.LimitReader(conn, maxConsoleOutput+1))
				if err != nil && !closedErr(err) {
					return err
				}
				if len(b) > maxConsoleOutput {
					return fmt.Errorf("console: the session printed more than %d bytes; run fewer commands at once", maxConsoleOutput)
				}
				s, err := splitConsole(string(b), cmds)
				if err != nil {
					return err
				}
				return a.print(s, nil)
			}
			out, err := a.textStream()
			if err != nil {
				return err
			}
			if _, err = io.Copy(out, conn); err != nil && !closedErr(err) {
				return err
			}
			return out.Flush()
		},
	}
	cmd.Flags().StringArrayVarP(&cmds, "command", "c", nil, "run this console command (repeatable) and exit")
	return cmd
}

func closedErr(err error) bool {
	return strings.Contains(err.Error(), "close") || strings.Contains(err.Error(), "EOF")
}

// consoleSession is a console session run with -c, for -o json.
type consoleSession struct {
	Cal      string          `json:"cal"`
	Commands []consoleResult `json:"commands"`
}

// consoleResult is one command and what the console printed for it.
type consoleResult struct {
	Command string `json:"command"`
	Output  string `json:"output"`
}

// splitConsole splits the transcript of a console session by command. The
// console prints a banner naming the Cal, then its prompt ("cal XXXX-XXXX> ")
// before each command it reads, and "bye" at exit.
func splitConsole(out string, cmds []string) (*consoleSession, error) {
	banner, rest, ok := strings.Cut(out, "\n")
	const pre = "calnet console of cal "
	if !ok || !strings.HasPrefix(banner, pre) {
		return nil, fmt.Errorf("console: unexpected greeting %q", firstLine(out))
	}
	id, _, _ := strings.Cut(strings.TrimPrefix(banner, pre), " ")
	if len(id) < 8 {
		return nil, fmt.Errorf("console: unexpected greeting %q", banner)
	}
	prompt := "cal " + id[:4] + "-" + id[4:8] + "> "
	parts := strings.Split(rest, prompt)
	if parts[0] != "" {
		return nil, fmt.Errorf("console: unexpected output before the first prompt: %q", firstLine(parts[0]))
	}
	s := &consoleSession{Cal: id, Commands: []consoleResult{}}
	for i, c := range cmds {
		if i+1 >= len(parts) {
			return s, fmt.Errorf("console: the session ended before command %d (%q) ran", i+1, c)
		}
		s.Commands = append(s.Commands, consoleResult{Command: c, Output: parts[i+1]})
	}
	return s, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
