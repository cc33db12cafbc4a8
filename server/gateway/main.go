// Command corrigo-gateway serves Corrigo's REST API: a grpc-gateway in front of a
// Corrigo server, answering the JSON of the source documents for the routes of the
// protos' google.api.http annotations. `make gateway` builds it; see README "REST".
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/golang/protobuf/proto"
	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	// Error details (ErrorInfo, BadRequest) must be known to render an error's JSON;
	// without them every error becomes a 500 "failed to marshal error message".
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"

	corrigo "github.com/corrigo/corrigo/gen/go/corrigo/v1"
)

// httpCodeHeader is the initial metadata in which the server names the HTTP status
// of a success other than 200 (201 for CreateCorrectionSession).
const httpCodeHeader = "x-http-code"

type options struct {
	listen          string
	endpoint        string
	endpointTLS     bool
	endpointCA      string
	endpointName    string
	maxMessageBytes int
	grace           time.Duration
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HOST:PORT to serve REST on (port 0 picks a free one)")
	flag.StringVar(&o.endpoint, "endpoint", "127.0.0.1:50051", "HOST:PORT of the Corrigo gRPC server")
	flag.BoolVar(&o.endpointTLS, "endpoint-tls", false, "call the server over TLS, verified with the system's CAs (or --endpoint-ca)")
	flag.StringVar(&o.endpointCA, "endpoint-ca", "", "PEM file of the CA (or self-signed certificate) to verify the server with; implies --endpoint-tls")
	flag.StringVar(&o.endpointName, "endpoint-server-name", "", "name to verify the server's certificate against (default: the endpoint's host)")
	flag.IntVar(&o.maxMessageBytes, "max-message-bytes", 16*1024*1024, "largest answer accepted from the server (the server's own default)")
	flag.DurationVar(&o.grace, "grace", 10*time.Second, "time in-flight requests get on SIGTERM/SIGINT")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected arguments: %v", flag.Args())
	}
	return o
}

func transport(o options) (grpc.DialOption, error) {
	if !o.endpointTLS && o.endpointCA == "" {
		return grpc.WithInsecure(), nil
	}
	config := &tls.Config{ServerName: o.endpointName, MinVersion: tls.VersionTLS12}
	if o.endpointCA != "" {
		pem, err := os.ReadFile(o.endpointCA)
		if err != nil {
			return nil, err
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", o.endpointCA)
		}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(config)), nil
}

// outgoingHeader forwards the server's metadata as Grpc-Metadata-* headers, except
// gRPC's own content type and the status header, which the gateway consumes.
func outgoingHeader(key string) (string, bool) {
	if key == "content-type" || key == httpCodeHeader {
		return "", false
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// shapeResponse sets the status the server asked for, and marks streams as NDJSON
// (the gateway calls it once with no message before a stream's first line).
func shapeResponse(ctx context.Context, w http.ResponseWriter, message proto.Message) error {
	if message == nil {
		w.Header().Set("Content-Type", "application/x-ndjson")
		return nil
	}
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	if values := md.HeaderMD.Get(httpCodeHeader); len(values) > 0 {
		code, err := strconv.Atoi(values[0])
		if err != nil || code < 200 || code > 299 {
			return fmt.Errorf("bad %s from the server: %q", httpCodeHeader, values[0])
		}
		w.WriteHeader(code)
	}
	return nil
}

type register func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error

var services = []register{
	corrigo.RegisterAdminServiceHandler,
	corrigo.RegisterSourceServiceHandler,
	corrigo.RegisterDatasetServiceHandler,
	corrigo.RegisterModelServiceHandler,
	corrigo.RegisterCorrectionSessionServiceHandler,
	corrigo.RegisterDocumentGroupServiceHandler,
	corrigo.RegisterPracticeCatalogServiceHandler,
	corrigo.RegisterFewShotExampleServiceHandler,
	corrigo.RegisterPracticeSessionServiceHandler,
	corrigo.RegisterImprovementServiceHandler,
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("corrigo-gateway: ")
	o := parseFlags()

	creds, err := transport(o)
	if err != nil {
		log.Fatalf("--endpoint-ca: %v", err)
	}
	conn, err := grpc.Dial(o.endpoint, creds, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxMessageBytes)))
	if err != nil {
		log.Fatalf("--endpoint %s: %v", o.endpoint, err)
	}
	defer conn.Close()

	mux := runtime.NewServeMux(
		// Proto field names and every field, defaults included, as the documents show them.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{OrigName: true, EmitDefaults: true}),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithForwardResponseOption(shapeResponse),
	)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	for _, add := range services {
		if err := add(ctx, mux, conn); err != nil {
			log.Fatalf("registering a service: %v", err)
		}
	}

	listener, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Fatalf("--listen %s: %v", o.listen, err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	log.Printf("serving REST on http://%s for the gRPC server at %s", listener.Addr(), o.endpoint)

	select {
	case err := <-served:
		log.Fatalf("serving: %v", err)
	case <-ctx.Done():
	}
	log.Printf("stopping: in-flight requests get %s", o.grace)
	shutdown, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		log.Printf("stopping: %v; closing the connections still open", err)
		server.Close()
	}
}
