package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"ferry/devices"
	"ferry/edge/adminapi"
)

// The Kafka users and ACL commands, like the device commands, work on a
// running node through its admin API or on a stopped node's registry
// (--data-dir), printing the same tables and JSON.

func usersCommand() *command {
	return &command{
		name:    "users",
		summary: "add, list, delete Kafka users (SASL PLAIN and SCRAM) and change their passwords, on a running node (--admin) or a stopped one's data (--data-dir)",
		example: "printf '%s\\n' \"$PW\" | ferry users add alice --password-stdin --admin http://localhost:8080",
		subs: []*command{
			{
				name: "add", args: "NAME", summary: "add a Kafka user with credentials for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512",
				example: "printf '%s\\n' \"$PW\" | ferry users add alice --password-stdin --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					pw := passwordFlags(fs)
					return changeAction("NAME", "added user %s", pw.with(func(name, password string) error {
						return where.securityChange(func(r *devices.Registry) error { return r.AddUser(name, password) },
							send("POST", "/api/users", adminapi.AddUserRequest{Name: name, Password: password}))
					}))
				},
			},
			{
				name: "list", summary: "list Kafka users and their mechanisms",
				example: "ferry users list --data-dir ./data --json",
				flags: dataView(localOrAdmin.registry, "", "/api/users",
					func(r *devices.Registry, _ string) ([]adminapi.UserView, error) { return r.Users() }, printUsers),
			},
			{
				name: "delete", args: "NAME", summary: "delete a Kafka user (its ACLs stay, as Kafka's do)",
				example: "ferry users delete alice --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					return changeAction("NAME", "deleted user %s", func(name string) error {
						return where.securityChange(func(r *devices.Registry) error { return r.DeleteUser(name) },
							send("DELETE", "/api/users/"+pathEscape(name), nil))
					})
				},
			},
			{
				name: "passwd", args: "NAME", summary: "set a Kafka user's password (every mechanism)",
				example: "printf '%s\\n' \"$NEW_PW\" | ferry users passwd alice --password-stdin --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					pw := passwordFlags(fs)
					return changeAction("NAME", "password of user %s changed", pw.with(func(name, password string) error {
						return where.securityChange(func(r *devices.Registry) error { return r.SetUserPassword(name, password) },
							send("PATCH", "/api/users/"+pathEscape(name), adminapi.ChangeUserRequest{Password: password}))
					}))
				},
			},
		},
	}
}

// securityChange is registry for a change of Kafka users or ACLs, which
// is refused on the data directory of a cluster's node: there they are the
// cluster's, agreed through its metadata, and the node's registry follows
// that copy (a change made here would be undone at its next start).
func (t localOrAdmin) securityChange(local func(*devices.Registry) error, remote func(*adminClient) error) error {
	return t.choose(func(dir string) error {
		if fi, err := os.Stat(filepath.Join(dir, "cluster")); err == nil && fi.IsDir() {
			return fmt.Errorf("%s is the data directory of a cluster's node: its Kafka users and ACLs are the cluster's; change them on any running node of the cluster with --admin URL", dir)
		}
		return withRegistry(dir, local)
	}, remote)
}

func printUsers(out io.Writer, users []adminapi.UserView) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMECHANISMS\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, strings.Join(u.Mechanisms, ","), formatTime(u.CreatedAt))
	}
	return tw.Flush()
}

// aclFlags are the fields of a binding or a filter.
type aclFlags struct {
	principal, host, rtype, name, pattern, op, perm *string
}

func addACLFlags(fs *pflag.FlagSet, filter bool) aclFlags {
	def := func(create, list string) string {
		if filter {
			return list
		}
		return create
	}
	return aclFlags{
		principal: fs.String("principal", "", "User:NAME, or User:* for every user (a bare NAME is taken as User:NAME)"),
		host:      fs.String("host", def("*", ""), "client IP address, or * for any"),
		rtype:     fs.String("resource-type", def("TOPIC", ""), "TOPIC, GROUP or CLUSTER"),
		name:      fs.String("resource", "", "topic or group name, or prefix with --pattern PREFIXED; * for every one; kafka-cluster for CLUSTER"),
		pattern:   fs.String("pattern", def("LITERAL", ""), "LITERAL or PREFIXED"+map[bool]string{true: " (or MATCH: the bindings that apply to --resource)"}[filter]),
		op:        fs.String("operation", "", "ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE"),
		perm:      fs.String("permission", def("ALLOW", ""), "ALLOW or DENY"),
	}
}

func (f aclFlags) principalName() string {
	p := *f.principal
	if p != "" && !strings.HasPrefix(p, "User:") {
		p = "User:" + p
	}
	return p
}

func (f aclFlags) acl() devices.KafkaACL {
	up := strings.ToUpper
	return devices.KafkaACL{Principal: f.principalName(), Host: *f.host, ResourceType: up(*f.rtype), ResourceName: *f.name,
		PatternType: up(*f.pattern), Operation: up(*f.op), Permission: up(*f.perm)}
}

// query is the filter as the admin API's query string.
func (f aclFlags) query(fs *pflag.FlagSet) url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("principal", f.principalName())
	set("host", *f.host)
	set("resource_type", strings.ToUpper(*f.rtype))
	if fs.Changed("resource") {
		q.Set("resource_name", *f.name)
	}
	set("pattern_type", strings.ToUpper(*f.pattern))
	set("operation", strings.ToUpper(*f.op))
	set("permission", strings.ToUpper(*f.perm))
	return q
}

func aclsCommand() *command {
	return &command{
		name:    "acls",
		summary: "list, add and delete Kafka ACLs (applied with --kafka-sasl), on a running node (--admin) or a stopped one's data (--data-dir)",
		example: "ferry acls add --principal alice --resource sensors. --pattern PREFIXED --operation WRITE --admin http://localhost:8080",
		subs: []*command{
			{
				name: "list", summary: "list the ACL bindings the flags select (none: all)",
				example: "ferry acls list --principal alice --admin http://localhost:8080 --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					f := addACLFlags(fs, true)
					asJSON := fs.Bool("json", false, "print JSON")
					return showAction("", asJSON, func(string) ([]devices.KafkaACL, []byte, error) {
						return bindings(where, f.query(fs), (*devices.Registry).KafkaACLs, "GET")
					}, printACLs)
				},
			},
			{
				name: "add", summary: "add an ACL binding",
				example: "ferry acls add --principal bob --resource-type GROUP --resource g1 --operation READ --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					f := addACLFlags(fs, false)
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						a := f.acl()
						if a.ResourceType == "CLUSTER" && a.ResourceName == "" {
							a.ResourceName = devices.ClusterResource
						}
						if err := devices.ValidateKafkaACL(&a); err != nil {
							return usagef("%v", err)
						}
						err := where.securityChange(func(r *devices.Registry) error { return r.AddKafkaACLs([]devices.KafkaACL{a}) },
							send("POST", "/api/kafka-acls", []devices.KafkaACL{a}))
						if err != nil {
							return err
						}
						return printACLs(out, []devices.KafkaACL{a})
					}
				},
			},
			{
				name: "delete", summary: "delete the ACL bindings the flags select (at least one flag)",
				example: "ferry acls delete --principal alice --resource sensors. --pattern PREFIXED --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					f := addACLFlags(fs, true)
					asJSON := fs.Bool("json", false, "print JSON")
					return showAction("", asJSON, func(string) ([]devices.KafkaACL, []byte, error) {
						q := f.query(fs)
						if len(q) == 0 {
							return nil, nil, usagef("give at least one of --principal, --resource-type, --resource, ...: an empty filter would delete every ACL")
						}
						return bindings(where, q, (*devices.Registry).DeleteKafkaACLs, "DELETE")
					}, func(out io.Writer, acls []devices.KafkaACL) error {
						fmt.Fprintf(out, "deleted %d binding(s)\n", len(acls))
						return printACLs(out, acls)
					})
				},
			},
		},
	}
}

// bindings gets the bindings filter q selects, through local (the
// registry's KafkaACLs or DeleteKafkaACLs) or the admin API's method (GET
// or DELETE) on /api/kafka-acls; raw is the API's answer as it came, nil
// when local.
func bindings(where localOrAdmin, q url.Values, local func(*devices.Registry, devices.KafkaACLFilter) ([]devices.KafkaACL, error),
	method string) (acls []devices.KafkaACL, raw []byte, err error) {
	use := where.registry
	if method != "GET" {
		use = where.securityChange
	}
	err = use(func(r *devices.Registry) (err error) {
		acls, err = local(r, adminapi.KafkaACLFilter(q))
		return err
	}, func(c *adminClient) (err error) {
		raw, err = c.call(method, "/api/kafka-acls?"+q.Encode(), nil, &acls)
		return err
	})
	return acls, raw, err
}

func printACLs(out io.Writer, acls []devices.KafkaACL) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRINCIPAL\tHOST\tRESOURCE\tNAME\tPATTERN\tOPERATION\tPERMISSION")
	for _, a := range acls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Principal, a.Host, a.ResourceType, a.ResourceName, a.PatternType, a.Operation, a.Permission)
	}
	return tw.Flush()
}
