package cli

import (
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) consoleCmd() *cobra.Command {
	var cmds []string
	cmd := &cobra.Command{
		Use:   "console ID",
		Short: "Open a Cal's console: status, tiers, logs, reflect, spawn, help (-c runs commands and exits)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
				io.Copy(conn, os.Stdin)
				io.WriteString(conn, "exit\n")
			}()
			_, err = io.Copy(a.env.Stdout, conn)
			if err != nil && !strings.Contains(err.Error(), "close") && !strings.Contains(err.Error(), "EOF") {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&cmds, "command", "c", nil, "run this console command (repeatable) and exit")
	return cmd
}
