package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tokend/appliance"
)

// newRotateBootstrapTokenCmd replaces the bootstrap super-admin API token
// (DATA_DIR/admin-token) whether or not tokend runs: a stopped store is
// changed directly, a running tokend is asked through its admin API (as
// `tokend backup` does) with the token being replaced.
func (a *app) newRotateBootstrapTokenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-bootstrap-token",
		Short: "Replace the bootstrap admin API token in DATA_DIR/admin-token",
		Long: "Give the bootstrap super-admin API token a new secret and write it to\n" +
			"DATA_DIR/admin-token (0600, replaced atomically). The old token is refused from\n" +
			"that moment. Works while tokend runs (through its admin API, authenticated with\n" +
			"the old token, over DATA_DIR/tls.crt or tls_cert) and while it is stopped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, paths, err := a.configAndPaths()
			if err != nil {
				return err
			}
			// Reserve the new file before the token changes: a data dir we
			// cannot write to must fail while the old token still works.
			f, err := os.CreateTemp(paths.DataDir, ".admin-token.tmp-*")
			if err != nil {
				return fmt.Errorf("admin token file: %w", unwrapPath(err))
			}
			tmp := f.Name()
			defer os.Remove(tmp) // a no-op once renamed
			if err := f.Chmod(0o600); err != nil {
				f.Close()
				return err
			}
			// Run as root on a package install, keep the file the service
			// user's (as tokend wrote it).
			if fi, err := os.Stat(paths.AdminToken); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
					if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
						f.Close()
						return fmt.Errorf("admin token file: %w", err)
					}
				}
			}

			secret, where, err := a.rotateBootstrapToken(cmd.Context())
			if err != nil {
				f.Close()
				return err
			}
			lost := func(err error) error {
				return fmt.Errorf("the bootstrap token was rotated but %s could not be written (%w); "+
					"stop tokend, delete the file and start tokend to get a new one", paths.AdminToken, err)
			}
			if _, err := f.WriteString(secret.Reveal() + "\n"); err != nil {
				f.Close()
				return lost(err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return lost(err)
			}
			if err := f.Close(); err != nil {
				return lost(err)
			}
			if err := os.Rename(tmp, paths.AdminToken); err != nil {
				return lost(err)
			}
			if err := syncDir(filepath.Dir(paths.AdminToken)); err != nil {
				return lost(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bootstrap admin token rotated (%s); the old one is refused; the new one is in %s\n",
				where, paths.AdminToken)
			return nil
		},
	}
}

// rotateBootstrapToken rotates the token in the store of a stopped tokend,
// or through the admin API of the running one (offlineOrRunning), and
// returns the new secret and which way it went.
func (a *app) rotateBootstrapToken(ctx context.Context) (appliance.Secret, string, error) {
	var secret appliance.Secret
	where := "stopped store"
	err := a.offlineOrRunning(ctx, false, func(ctx context.Context, svc *appliance.Service) error {
		_, s, err := svc.ReplaceNamedAPIToken(ctx, adminTokenName, appliance.RoleSuperAdmin)
		secret = s
		return err
	}, func(ctx context.Context, api *runningAdminAPI) error {
		where = "through the running tokend"
		s, err := rotateOnline(ctx, api)
		if err != nil {
			return fmt.Errorf("tokend is running: %w", err)
		}
		secret = s
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return secret, where, nil
}

// rotateOnline rotates the bootstrap token through the running tokend's
// admin API, authenticated with the token it replaces. Any other token of
// the bootstrap name (there should be none) is revoked.
func rotateOnline(ctx context.Context, api *runningAdminAPI) (appliance.Secret, error) {
	var list struct {
		Items []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	if err := api.callJSON(ctx, http.MethodGet, "/api/v1/api-tokens", nil, &list); err != nil {
		return "", err
	}
	var ids []string
	for _, t := range list.Items {
		if t.Name == adminTokenName {
			ids = append(ids, t.ID)
		}
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("the running tokend has no bootstrap token (%s)", adminTokenName)
	}
	var rotated struct {
		Token string `json:"token"`
	}
	if err := api.callJSON(ctx, http.MethodPost, "/api/v1/api-tokens/"+url.PathEscape(ids[0])+"/rotate", nil, &rotated); err != nil {
		return "", err
	}
	if !strings.HasPrefix(rotated.Token, "tkd_") {
		return "", errors.New("the running tokend answered the rotation without a token")
	}
	api.token = rotated.Token
	for _, id := range ids[1:] {
		if err := api.callJSON(ctx, http.MethodDelete, "/api/v1/api-tokens/"+url.PathEscape(id), nil, nil); err != nil {
			return appliance.Secret(rotated.Token), fmt.Errorf("revoking another bootstrap token: %w", err)
		}
	}
	return appliance.Secret(rotated.Token), nil
}

// runningAdminAPI calls the admin API of the tokend running on a data dir.
type runningAdminAPI struct {
	base   string
	token  string
	client *http.Client
}

func newRunningAdminAPI(cfg *Config, paths dataPaths) (*runningAdminAPI, error) {
	token, err := os.ReadFile(paths.AdminToken)
	if err != nil {
		return nil, fmt.Errorf("reading its admin token: %w", err)
	}
	certFile := cfg.TLSCert
	if certFile == "" {
		certFile = paths.TLSCert
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading its certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	host, port, err := net.SplitHostPort(cfg.AdminListen)
	if err != nil {
		return nil, err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return &runningAdminAPI{base: "https://" + net.JoinHostPort(host, port), token: strings.TrimSpace(string(token)),
		client: &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}, nil
}
