package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"ferry/devices"
	"ferry/edge"
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
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						password, err := pw.read(true)
						if err != nil {
							return err
						}
						err = where.registry(func(r *devices.Registry) error { return r.AddUser(args[0], password) },
							func(c *adminClient) error {
								_, err := c.call("POST", "/api/users", edge.AddUserRequest{Name: args[0], Password: password}, nil)
								return err
							})
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(out, "added user %s\n", args[0])
						return err
					}
				},
			},
			{
				name: "list", summary: "list Kafka users and their mechanisms",
				example: "ferry users list --data-dir ./data --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						var users []edge.UserView
						var raw []byte
						err := where.registry(func(r *devices.Registry) (err error) {
							users, err = r.Users()
							return err
						}, func(c *adminClient) (err error) {
							raw, err = c.get("/api/users", &users)
							return err
						})
						if err != nil {
							return err
						}
						if *asJSON {
							return printJSON(out, raw, users)
						}
						tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "NAME\tMECHANISMS\tCREATED")
						for _, u := range users {
							fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, strings.Join(u.Mechanisms, ","), formatTime(u.CreatedAt))
						}
						return tw.Flush()
					}
				},
			},
			{
				name: "delete", args: "NAME", summary: "delete a Kafka user (its ACLs stay, as Kafka's do)",
				example: "ferry users delete alice --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						err := where.registry(func(r *devices.Registry) error { return r.DeleteUser(args[0]) },
							func(c *adminClient) error {
								_, err := c.do("DELETE", "/api/users/"+pathEscape(args[0]), nil)
								return err
							})
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(out, "deleted user %s\n", args[0])
						return err
					}
				},
			},
			{
				name: "passwd", args: "NAME", summary: "set a Kafka user's password (every mechanism)",
				example: "printf '%s\\n' \"$NEW_PW\" | ferry users passwd alice --password-stdin --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					pw := passwordFlags(fs)
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						password, err := pw.read(true)
						if err != nil {
							return err
						}
						err = where.registry(func(r *devices.Registry) error { return r.SetUserPassword(args[0], password) },
							func(c *adminClient) error {
								_, err := c.call("PATCH", "/api/users/"+pathEscape(args[0]), edge.ChangeUserRequest{Password: password}, nil)
								return err
							})
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(out, "password of user %s changed\n", args[0])
						return err
					}
				},
			},
		},
	}
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
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						q := f.query(fs)
						var acls []devices.KafkaACL
						var raw []byte
						err := where.registry(func(r *devices.Registry) (err error) {
							acls, err = r.KafkaACLs(edge.KafkaACLFilter(q))
							return err
						}, func(c *adminClient) (err error) {
							raw, err = c.get("/api/kafka-acls?"+q.Encode(), &acls)
							return err
						})
						if err != nil {
							return err
						}
						if *asJSON {
							return printJSON(out, raw, acls)
						}
						return printACLs(out, acls)
					}
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
						err := where.registry(func(r *devices.Registry) error { return r.AddKafkaACLs([]devices.KafkaACL{a}) },
							func(c *adminClient) error {
								_, err := c.call("POST", "/api/kafka-acls", []devices.KafkaACL{a}, nil)
								return err
							})
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
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						q := f.query(fs)
						if len(q) == 0 {
							return usagef("give at least one of --principal, --resource-type, --resource, ...: an empty filter would delete every ACL")
						}
						var acls []devices.KafkaACL
						var raw []byte
						err := where.registry(func(r *devices.Registry) (err error) {
							acls, err = r.DeleteKafkaACLs(edge.KafkaACLFilter(q))
							return err
						}, func(c *adminClient) (err error) {
							raw, err = c.call("DELETE", "/api/kafka-acls?"+q.Encode(), nil, &acls)
							return err
						})
						if err != nil {
							return err
						}
						if *asJSON {
							return printJSON(out, raw, acls)
						}
						fmt.Fprintf(out, "deleted %d binding(s)\n", len(acls))
						return printACLs(out, acls)
					}
				},
			},
		},
	}
}

func printACLs(out io.Writer, acls []devices.KafkaACL) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRINCIPAL\tHOST\tRESOURCE\tNAME\tPATTERN\tOPERATION\tPERMISSION")
	for _, a := range acls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Principal, a.Host, a.ResourceType, a.ResourceName, a.PatternType, a.Operation, a.Permission)
	}
	return tw.Flush()
}
