package strom

// Helpers shared by the franz-go tests: a real `strom server` per test, polling waits with
// deadlines, and clients set up for a single loopback broker.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Bounds on every wait, generous because CI shares two cores with the Rust suite; a healthy
// broker answers in milliseconds.
const (
	brokerReadyTimeout = 30 * time.Second
	brokerStopTimeout  = 15 * time.Second
	pollInterval       = 50 * time.Millisecond
	// How long a test waits for records, offsets or metadata to arrive.
	waitTimeout = 30 * time.Second
	// The bound on one test's client calls (each test also runs under `go test -timeout`).
	testTimeout   = 90 * time.Second
	startAttempts = 3
	logTailLines  = 60
)

// repoRoot is the repository root, found from this file's path (tests/go/broker_test.go).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// stromBin is $STROM_BIN, else target/debug/strom under the repository root.
func stromBin(t testing.TB) string {
	if configured := os.Getenv("STROM_BIN"); configured != "" {
		return configured
	}
	candidate := filepath.Join(repoRoot(), "target", "debug", "strom")
	if _, err := os.Stat(candidate); err != nil {
		t.Fatalf("no strom binary: set STROM_BIN or run `cargo build -p strom` (%v)", err)
	}
	return candidate
}

// Broker is one `strom server` process on a loopback port with its own data directory.
type Broker struct {
	t        testing.TB
	root     string
	dataDir  string
	logPath  string
	settings map[string]string
	port     int
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	exitErr  error
}

// groupSettings make a new classic group form its first generation at once instead of after
// Kafka's 3 s initial delay.
var groupSettings = map[string]string{"group.initial.rebalance.delay.ms": "0"}

// startBroker starts a broker with the given `--set` properties; it is stopped, and its log
// tail shown if the test failed, when the test ends.
func startBroker(t testing.TB, settings map[string]string) *Broker {
	t.Helper()
	root := t.TempDir()
	b := &Broker{
		t:        t,
		root:     root,
		dataDir:  filepath.Join(root, "data"),
		logPath:  filepath.Join(root, "broker.log"),
		settings: settings,
	}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("%s", b.logTail())
		}
	})
	b.Start()
	return b
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Start starts the process: on a fresh free port the first time, on the same port afterwards.
func (b *Broker) Start() {
	b.t.Helper()
	if b.cmd != nil {
		b.t.Fatalf("broker already running")
	}
	keepPort := b.port != 0
	for attempt := 1; ; attempt++ {
		if !keepPort {
			b.port = freePort(b.t)
		}
		b.spawn()
		err := b.waitReady()
		if err == nil {
			return
		}
		exited := b.exited()
		b.Stop()
		// A port picked by binding to :0 can be taken by someone else before the broker binds
		// it; only then is another port worth a try.
		if !exited || keepPort || attempt == startAttempts {
			b.t.Fatalf("strom did not become ready on %s: %v\n%s", b.Addr(), err, b.logTail())
		}
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *Broker) spawn() {
	if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	args := []string{"server", "--listeners", b.Addr(), "--data-dir", b.dataDir}
	keys := make([]string, 0, len(b.settings))
	for k := range b.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--set", k+"="+b.settings[k])
	}
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	defer logFile.Close()
	bin := stromBin(b.t)
	fmt.Fprintf(logFile, "==== start: %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The broker reads STROM_* variables as broker properties: pass none but STROM_LOG.
	env := []string{"NO_COLOR=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STROM_") || strings.HasPrefix(kv, "STROM_LOG=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	// SIGTERM the broker if the test binary dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting %s: %v", bin, err)
	}
	b.cmd = cmd
	b.done = make(chan struct{})
	go func(done chan struct{}) {
		b.exitErr = cmd.Wait()
		close(done)
	}(b.done)
}

func (b *Broker) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *Broker) waitReady() error {
	deadline := time.Now().Add(brokerReadyTimeout)
	var last error
	for {
		if b.exited() {
			return fmt.Errorf("strom exited: %v", b.exitErr)
		}
		if last = apiVersionsOK(b.Addr()); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", brokerReadyTimeout, last)
		}
		time.Sleep(pollInterval)
	}
}

// apiVersionsOK sends ApiVersions v0 over a raw socket and checks the answer's error code.
func apiVersionsOK(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	const correlationID = 7
	clientID := "strom-go-test"
	header := make([]byte, 0, 64)
	header = binary.BigEndian.AppendUint16(header, 18) // ApiVersions
	header = binary.BigEndian.AppendUint16(header, 0)
	header = binary.BigEndian.AppendUint32(header, correlationID)
	header = binary.BigEndian.AppendUint16(header, uint16(len(clientID)))
	header = append(header, clientID...)
	request := binary.BigEndian.AppendUint32(nil, uint32(len(header)))
	if _, err := conn.Write(append(request, header...)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return err
	}
	if len(body) < 6 || binary.BigEndian.Uint32(body) != correlationID || body[4] != 0 || body[5] != 0 {
		return errors.New("unexpected ApiVersions answer")
	}
	return nil
}

// Stop sends SIGTERM (a graceful shutdown) and kills the process if it has not exited by the
// deadline.
func (b *Broker) Stop() { b.stop(syscall.SIGTERM) }

// Kill stops the broker with SIGKILL.
func (b *Broker) Kill() { b.stop(syscall.SIGKILL) }

func (b *Broker) stop(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	cmd, done := b.cmd, b.done
	b.cmd = nil
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(brokerStopTimeout):
		_ = cmd.Process.Kill()
		<-done
		b.appendLog("==== go test: broker ignored the signal; killed\n")
	}
}

// Restart stops the broker gracefully and starts it again on the same port and directory.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.Start()
}

func (b *Broker) appendLog(line string) {
	if f, err := os.OpenFile(b.logPath, os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		_, _ = f.WriteString(line)
		f.Close()
	}
}

func (b *Broker) logTail() string {
	raw, _ := os.ReadFile(b.logPath)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("---- %s (last %d lines) ----\n%s", b.logPath, len(lines), strings.Join(lines, "\n"))
}

// testContext is bounded by testTimeout and cancelled when the test ends.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// clientOpts are the options every client of the tests starts from.
func clientOpts(b *Broker, opts ...kgo.Opt) []kgo.Opt {
	all := append([]kgo.Opt{
		kgo.SeedBrokers(b.Addr()),
		kgo.ClientID("strom-go-test"),
		// Records are wanted as soon as they exist, not after Kafka's 5 s long poll.
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.RetryTimeout(waitTimeout),
		// kgo answers metadata requests younger than this from its cache (default 5 s), which
		// would hide admin changes from the next request for that long.
		kgo.MetadataMinAge(100 * time.Millisecond),
	}, opts...)
	if os.Getenv("STROM_GO_TEST_DEBUG") != "" {
		all = append(all, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, func() string { return time.Now().Format("15:04:05.000 ") })))
	}
	return all
}

// newClient makes a kgo client for the broker, closed when the test ends.
func newClient(t testing.TB, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(clientOpts(b, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newAdmin makes a kadm client over its own kgo client.
func newAdmin(t testing.TB, b *Broker) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, b))
}

// topicName makes a topic (or group, or transactional id) name unique to the test.
func topicName(t testing.TB, label string) string {
	base := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if len(base) > 80 {
		base = base[:80]
	}
	return fmt.Sprintf("%s-%s-%d", base, label, time.Now().UnixNano()%1_000_000_000)
}

// createTopic creates a topic and fails the test on any error.
func createTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(testContext(t), partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
}

// waitUntil polls cond until it returns true; it fails the test after timeout with what and
// the last error cond returned.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
		}
		time.Sleep(pollInterval)
	}
}

// pollUntil polls cl until stop says the records so far are enough; it fails the test on a
// fetch error or after the deadline. Every record is returned, in the order received.
func pollUntil(t testing.TB, cl interface {
	PollFetches(context.Context) kgo.Fetches
}, timeout time.Duration, what string, stop func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []*kgo.Record
	for !stop(got) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("timed out after %s waiting for %s: have %d records", timeout, what, len(got))
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("fetch errors while waiting for %s: %v", what, errs)
		}
		got = append(got, fetches.Records()...)
	}
	return got
}

// pollCount polls until at least n records have arrived.
func pollCount(t testing.TB, cl interface {
	PollFetches(context.Context) kgo.Fetches
}, n int) []*kgo.Record {
	t.Helper()
	return pollUntil(t, cl, waitTimeout, fmt.Sprintf("%d records", n), func(rs []*kgo.Record) bool { return len(rs) >= n })
}

// pollThrough polls until a record with the given value has arrived: every record written to
// its partition before it has then been seen (or filtered out by the client) too, so a test can
// assert what did not arrive without waiting for nothing.
func pollThrough(t testing.TB, cl interface {
	PollFetches(context.Context) kgo.Fetches
}, sentinel string) []*kgo.Record {
	t.Helper()
	return pollUntil(t, cl, waitTimeout, "sentinel "+sentinel, func(rs []*kgo.Record) bool {
		for _, r := range rs {
			if string(r.Value) == sentinel {
				return true
			}
		}
		return false
	})
}

// produceSync produces records and fails the test on any error.
func produceSync(t testing.TB, cl *kgo.Client, records ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(testContext(t), records...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func values(records []*kgo.Record) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = string(r.Value)
	}
	return out
}

func str(s string) *string { return &s }

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
