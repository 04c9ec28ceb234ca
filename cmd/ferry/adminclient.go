package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"ferry/devices"
)

// The commands that act on a running node speak its admin API (edge/api.go)
// through adminClient. Where the node is comes from --admin, else
// FERRY_ADMIN, else http://localhost:8080; its token from --admin-token,
// else FERRY_ADMIN_TOKEN (the variable a node reads its own token from).

const defaultAdmin = "http://localhost:8080"

// adminOptions are the flags of a command that talks to a running node.
type adminOptions struct {
	fs    *pflag.FlagSet
	url   *string
	token *string
}

func adminFlags(fs *pflag.FlagSet) *adminOptions {
	return &adminOptions{
		fs:    fs,
		url:   fs.String("admin", "", "the running node's admin address, e.g. http://gw1:8080 (default: $FERRY_ADMIN, else "+defaultAdmin+")"),
		token: fs.String("admin-token", "", "the node's admin token (default: $FERRY_ADMIN_TOKEN)"),
	}
}

// given says whether the node was named, by flag or variable.
func (o *adminOptions) given() bool { return *o.url != "" || os.Getenv("FERRY_ADMIN") != "" }

// client builds the client the flags and variables describe.
func (o *adminOptions) client() (*adminClient, error) {
	base := *o.url
	if base == "" {
		base = os.Getenv("FERRY_ADMIN")
	}
	if base == "" {
		base = defaultAdmin
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, usagef("--admin %q: want http://host:port", base)
	}
	token := *o.token
	if token == "" {
		token = os.Getenv("FERRY_ADMIN_TOKEN")
	}
	return &adminClient{base: strings.TrimSuffix(base, "/"), host: u.Hostname(), token: token, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

// adminClient calls a node's admin API.
type adminClient struct {
	base  string // http://host:port
	host  string
	token string
	hc    *http.Client
}

// apiError is an error answer of the admin API.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// do sends in (JSON, when not nil) and returns the answer's body; an error
// answer becomes an error with the API's message.
func (c *adminClient) do(method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, body)
	if err != nil {
		return nil, usagef("--admin %q: %v", c.base, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w (is the node running? --admin names it)", c.base, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s's answer: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(out))
		}
		msg := fmt.Sprintf("%s: %s", c.base, e.Error)
		if resp.StatusCode == http.StatusUnauthorized {
			msg += " (give --admin-token or set FERRY_ADMIN_TOKEN)"
		}
		return nil, &apiError{status: resp.StatusCode, msg: msg}
	}
	return out, nil
}

// get decodes the answer of a GET into v and returns the raw body too
// (what --json prints).
func (c *adminClient) get(path string, v any) ([]byte, error) {
	return c.call("GET", path, nil, v)
}

// call sends in and decodes the answer into v (when not nil).
func (c *adminClient) call(method, path string, in, v any) ([]byte, error) {
	body, err := c.do(method, path, in)
	if err != nil {
		return nil, err
	}
	if v != nil && len(body) > 0 {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, fmt.Errorf("%s%s: %w", c.base, path, err)
		}
	}
	return body, nil
}

// kafkaSeed is the address of the node's Kafka listener as this client
// reaches it: the listener's port on the admin API's host when the
// listener is bound to every interface.
func (c *adminClient) kafkaSeed(listener string) string {
	host, port, err := net.SplitHostPort(listener)
	if err != nil {
		return listener
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = c.host
	}
	return net.JoinHostPort(host, port)
}

// writeRaw writes an API answer as --json prints it: one JSON value and a
// newline.
func writeRaw(out io.Writer, body []byte) error {
	body = bytes.TrimRight(body, "\n")
	_, err := fmt.Fprintf(out, "%s\n", body)
	return err
}

// pathEscape escapes a topic, group or device id for a URL path.
func pathEscape(s string) string { return url.PathEscape(s) }

// localOrAdmin is how a command that works on a stopped node's data
// directory as well as on a running node chooses: --data-dir means the
// directory, otherwise the admin API.
type localOrAdmin struct {
	admin   *adminOptions
	dataDir *string
	create  *bool
}

func localOrAdminFlags(fs *pflag.FlagSet) localOrAdmin {
	a := adminFlags(fs)
	d := fs.String("data-dir", "", "work on a stopped node's data directory instead of a running node's admin API")
	c := fs.Bool("create-data-dir", false, "with --data-dir: start a new data directory there if it holds no ferry state yet (setting a node up before its first start)")
	return localOrAdmin{admin: a, dataDir: d, create: c}
}

// local says whether to work on the data directory; giving both is a
// usage error, and so is a directory with no ferry state in it unless
// --create-data-dir says to start one: a mistyped --data-dir would
// otherwise make an empty directory the node never looks at and succeed.
func (t localOrAdmin) local() (bool, error) {
	if *t.dataDir == "" {
		return false, nil
	}
	if *t.admin.url != "" {
		return false, usagef("--data-dir and --admin exclude each other: a stopped node's directory, or a running node")
	}
	if !*t.create {
		if err := checkDataDir(*t.dataDir); err != nil {
			return false, err
		}
	}
	return true, nil
}

// stateFiles are the files a node's data directory holds, one of which any
// directory a ferry node or command has used has: the log's topic
// catalogue (every node start), the device registry, the mirror's state.
var stateFiles = []string{filepath.Join("log", "topics.db"), devices.FileName, "mirror.db", "kafka-groups.db"}

// checkDataDir refuses a directory that holds no ferry state.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--data-dir %s does not exist (mistyped? --create-data-dir starts a new one there)", dir)
		}
		return fmt.Errorf("--data-dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--data-dir %s is not a directory", dir)
	}
	for _, name := range stateFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("--data-dir %s holds no ferry state (none of %s): mistyped? --create-data-dir starts a new data directory there", dir, strings.Join(stateFiles, ", "))
}

// choose calls local with the data directory (--data-dir), or remote with
// the admin API's client.
func (t localOrAdmin) choose(local func(dataDir string) error, remote func(*adminClient) error) error {
	isLocal, err := t.local()
	if err != nil {
		return err
	}
	if isLocal {
		return local(*t.dataDir)
	}
	c, err := t.admin.client()
	if err != nil {
		return err
	}
	return remote(c)
}
