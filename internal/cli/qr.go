package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	qrcode "github.com/skip2/go-qrcode"
	"github.com/spf13/cobra"
)

func (a *app) qrCmd() *cobra.Command {
	var png, svg string
	cmd := &cobra.Command{
		Use:   "qr ID",
		Short: "Show a Cal's namespace address card as a QR code (URL and key fingerprint)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.apiClient()
			if err != nil {
				return err
			}
			card, err := c.Card(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, out := range []struct{ path, format string }{{png, "png"}, {svg, "svg"}} {
				if out.path == "" {
					continue
				}
				img, err := c.CardQR(cmd.Context(), args[0], out.format)
				if err != nil {
					return err
				}
				if err := os.WriteFile(out.path, img, 0o644); err != nil {
					return err
				}
			}
			text, _ := json.Marshal(card)
			q, err := qrcode.New(string(text), qrcode.Medium)
			if err != nil {
				return err
			}
			return a.print(card, func(w io.Writer) {
				fmt.Fprint(w, q.ToSmallString(false))
				fmt.Fprintf(w, "%s\n%s\n", card.URL, card.Fingerprint)
			})
		},
	}
	cmd.Flags().StringVar(&png, "png", "", "also write the QR code as PNG to this file")
	cmd.Flags().StringVar(&svg, "svg", "", "also write the QR code as SVG to this file")
	return cmd
}
