package calrt

import (
	"context"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/soulfra/calnet/internal/spiffeca"
)

// WorkloadSocket is the SPIFFE Workload API socket in the Cal's data
// directory; its programs find it in SPIFFE_ENDPOINT_SOCKET.
const WorkloadSocket = "spiffe.sock"

// workloadAPI serves the SPIFFE Workload API (go-spiffe's published
// protobuf and gRPC definitions) to the Cal's workload: its X.509-SVID,
// spiffe://<network>/cal/<id>/workload, and the network's bundle, pushed
// again at every renewal. JWT-SVIDs are not offered (Unimplemented).
type workloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	rt *Runtime
}

// checkHeader requires the header every Workload API client sends, as
// SPIRE does: it keeps a request forged through a proxy (SSRF) out.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// FetchX509SVID streams the workload's SVID, then each renewal.
func (w *workloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	if err := checkHeader(ctx); err != nil {
		return err
	}
	var version uint64
	for {
		s, v, err := w.rt.svids.next(ctx, version)
		if err != nil {
			return err
		}
		version = v
		if err := stream.Send(&workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
			SpiffeId: s.id, X509Svid: concat(s.chain), X509SvidKey: s.key, Bundle: concat(s.bundle),
		}}}); err != nil {
			return err
		}
	}
}

// FetchX509Bundles streams the network's bundle, then each change.
func (w *workloadAPI) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	if err := checkHeader(ctx); err != nil {
		return err
	}
	var version uint64
	var last []byte
	for {
		s, v, err := w.rt.svids.next(ctx, version)
		if err != nil {
			return err
		}
		version = v
		b := concat(s.bundle)
		if last != nil && string(b) == string(last) {
			continue
		}
		last = b
		td := spiffeca.TrustDomain(w.rt.network).IDString()
		if err := stream.Send(&workload.X509BundlesResponse{Bundles: map[string][]byte{td: b}}); err != nil {
			return err
		}
	}
}

func concat(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, d...)
	}
	return out
}

// serveWorkloadAPI starts the Workload API on the Cal's socket and keeps
// the workload's SVID renewed, once: the first workload program starts
// it.
func (rt *Runtime) serveWorkloadAPI(ctx context.Context) error {
	rt.wapiOnce.Do(func() {
		ln, err := listenUnix(filepath.Join(rt.dir, WorkloadSocket), 0o600)
		if err != nil {
			rt.wapiErr = err
			return
		}
		srv := grpc.NewServer()
		workload.RegisterSpiffeWorkloadAPIServer(srv, &workloadAPI{rt: rt})
		go func() {
			if err := srv.Serve(ln); err != nil {
				rt.log.Error("workload api stopped", "err", err)
			}
		}()
		rt.closers = append(rt.closers, srv.Stop)
		go rt.keepRenewed(ctx, "workload", rt.renewWorkloadSVID)
	})
	return rt.wapiErr
}
