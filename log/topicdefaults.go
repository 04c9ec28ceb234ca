package log

import "fmt"

// SetTopicDefaults changes the node's topic config defaults live (the
// broker-level log.retention.ms and friends of Kafka's dynamic broker
// configs): set overrides keys, remove drops the node's default for keys
// (the built-in one applies again). The change applies at once to every
// topic that does not set the key itself, and to topics created later. A
// value any topic would refuse changes nothing. It is not persisted: the
// node's flags give the defaults again at the next start.
func (l *Log) SetTopicDefaults(set map[string]string, remove []string) error {
	if err := ValidateConfigs(set); err != nil {
		return err
	}
	for _, k := range remove {
		if _, ok := configSpecs[k]; !ok {
			return fmt.Errorf("%w: unknown key %q", ErrInvalidConfig, k)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	next := copyConfigs(l.defaults)
	for _, k := range remove {
		delete(next, k)
	}
	for k, v := range set {
		next[k] = v
	}
	if _, err := ParseTopicConfig(nil, next); err != nil {
		return err
	}
	cfgs := make(map[*topic]TopicConfig, len(l.topics))
	for _, t := range l.topics {
		cfg, err := ParseTopicConfig(t.info.Configs, next)
		if err != nil {
			return fmt.Errorf("topic %s: %w", t.info.Name, err)
		}
		cfgs[t] = cfg
	}
	l.defaults = next
	for t, cfg := range cfgs {
		t.cfg.Store(&cfg)
	}
	l.logger.Info("topic defaults altered", "set", set, "removed", remove)
	return nil
}
