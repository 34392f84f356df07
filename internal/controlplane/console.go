package controlplane

import (
	"context"
	"io"
	"net/http"

	"github.com/coder/websocket"

	"github.com/soulfra/calnet/internal/calproto"
)

// handleConsole attaches a WebSocket to a Cal's console (its CLI server),
// relaying bytes both ways. The console acts with the Cal's powers, so it
// needs the admin credential.
func (s *Server) handleConsole(w http.ResponseWriter, r *http.Request) {
	rec, aerr := s.resolve(r.Context(), r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if rec.State != StateRunning {
		writeError(w, apiErr(409, "cal %s is %s", rec.ID, rec.State))
		return
	}
	release, aerr := s.streams.acquire(actorOf(r))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer release()
	sock, err := s.calSocket(rec.ID, calproto.ConsoleSocket)
	if err != nil {
		writeError(w, err)
		return
	}
	cal, err := sock.Dial(r.Context())
	if err != nil {
		s.log.Warn("console not answering", "cal", rec.ID, "err", err)
		writeError(w, apiErr(502, "cal %s: console not answering (is its tier -2 up?)", rec.ID))
		return
	}
	defer cal.Close()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ws := websocket.NetConn(ctx, c, websocket.MessageBinary)
	s.bus.publish(Event{Type: "console.attached", Cal: rec.ID, Actor: actorOf(r)})
	s.note(fromOperator, rec.ID, "console", 0)
	done := make(chan struct{}, 2)
	// Either side closing ends the session, and both copies with it; an
	// error is only how that end shows, and nobody is left to tell.
	go func() { _, _ = io.Copy(cal, ws); done <- struct{}{} }()
	go func() { _, _ = io.Copy(ws, cal); done <- struct{}{} }()
	<-done
}
