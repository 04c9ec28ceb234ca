package kafka

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const groupChildEnv = "FERRY_KAFKA_GROUP_CHILD_BROKER"

// TestGroupChild is the body of a group member run as a separate process;
// it does nothing in a normal run.
func TestGroupChild(t *testing.T) {
	addr := os.Getenv(groupChildEnv)
	if addr == "" {
		t.Skip("child process of TestGroupMemberKilled only")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("killed"), kgo.ConsumeTopics("kill"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(2*time.Second),
		kgo.HeartbeatInterval(100*time.Millisecond), kgo.RebalanceTimeout(5*time.Second), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		os.Exit(3)
	}
	for {
		fs := cl.PollFetches(context.Background())
		for _, r := range fs.Records() {
			os.Stdout.WriteString(fmt.Sprintf("consumed %d/%d\n", r.Partition, r.Offset))
		}
	}
}

// TestGroupMemberKilled: one member of a three-member group is a separate
// process, killed with SIGKILL (no LeaveGroup). Its session expires, the two
// others take its partitions, and no record is lost.
func TestGroupMemberKilled(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("kill", 6, nil)
	produceN(t, b, "kill", 300, "a")
	child := exec.Command(os.Args[0], "-test.run=^TestGroupChild$", "-test.count=1")
	child.Env = append(os.Environ(), groupChildEnv+"="+b.addr)
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	killed := &groupConsumer{seen: map[string]int{}, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), "consumed "); ok {
				killed.mu.Lock()
				killed.seen[k]++
				killed.mu.Unlock()
			}
		}
		close(killed.done)
	}()
	members := []*groupConsumer{startGroupConsumer(t, b, "killed", "kill"), startGroupConsumer(t, b, "killed", "kill")}
	waitStable(t, b, "killed", 3)
	waitExclusive(t, b, "killed", "kill", 6)
	waitConsumed(t, append(members, killed), endOffsets(t, b, "kill", 6))

	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	<-killed.done
	waitStable(t, b, "killed", 2)
	waitExclusive(t, b, "killed", "kill", 6)
	produceN(t, b, "kill", 300, "b")
	waitConsumed(t, append(members, killed), endOffsets(t, b, "kill", 6))
}
