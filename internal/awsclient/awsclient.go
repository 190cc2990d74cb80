// Package awsclient is the one place kvstream's AWS clients (the CLI's
// --endpoint commands, the forwarder, the endpoint benchmarks) get their
// AWS configuration for a Kinesis endpoint, so they all follow the same
// credential and region rules.
package awsclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/kvstream/kvstream/internal/sdkbody"
)

// DefaultRegion is the region used when neither the caller, the
// environment nor the AWS configuration names one.
const DefaultRegion = "us-east-1"

// ErrEndpoint means an endpoint is not an http or https URL with a host.
var ErrEndpoint = errors.New("endpoint must be a URL such as http://127.0.0.1:4567")

// ParseEndpoint parses an endpoint URL: http or https, with a host.
func ParseEndpoint(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q", ErrEndpoint, endpoint)
	}
	return u, nil
}

// IsLoopback reports whether host ("localhost" or an IP address) names
// only the loopback interface.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Config returns the AWS configuration for a client of the Kinesis
// endpoint ("" for AWS's own endpoint of the region).
//
// Credentials: on a loopback endpoint (a local kvstream serve) without
// $AWS_PROFILE, no AWS files are read: the credentials are
// $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY and $AWS_SESSION_TOKEN if
// set, placeholders otherwise (a server that does not verify SigV4
// accepts any). Elsewhere, or with $AWS_PROFILE set, they come from the
// SDK's default chain (environment, shared files, SSO, container and
// instance roles).
//
// Region: region if not empty, else $AWS_REGION, else (the default chain
// only) the AWS configuration's, else $AWS_DEFAULT_REGION, else
// DefaultRegion.
//
// HTTP client: the SDK's default (or the one the AWS configuration
// builds, e.g. for $AWS_CA_BUNDLE), handing request bodies to net/http in
// memory (internal/sdkbody), so that the SDK's request-body race cannot
// lose the answer to a call the server applied and make the caller send
// it again. A caller may replace it.
//
// Retries and timeouts are left to the caller.
func Config(ctx context.Context, endpoint, region string) (aws.Config, error) {
	local := false
	if endpoint != "" {
		u, err := ParseEndpoint(endpoint)
		if err != nil {
			return aws.Config{}, err
		}
		local = IsLoopback(u.Hostname()) && os.Getenv("AWS_PROFILE") == ""
	}
	region = cmp.Or(region, os.Getenv("AWS_REGION"))
	if local {
		return aws.Config{
			Region: cmp.Or(region, os.Getenv("AWS_DEFAULT_REGION"), DefaultRegion),
			Credentials: credentials.NewStaticCredentialsProvider(
				cmp.Or(os.Getenv("AWS_ACCESS_KEY_ID"), "kvstream"),
				cmp.Or(os.Getenv("AWS_SECRET_ACCESS_KEY"), "kvstream"),
				os.Getenv("AWS_SESSION_TOKEN")),
			HTTPClient: sdkbody.Client(nil),
		}, nil
	}
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	cfg.Region = cmp.Or(cfg.Region, os.Getenv("AWS_DEFAULT_REGION"), DefaultRegion)
	cfg.HTTPClient = sdkbody.Client(cfg.HTTPClient)
	return cfg, nil
}
