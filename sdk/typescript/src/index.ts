// The calnet TypeScript SDK: the REST and WebSocket API of a running
// network (`calnet up`), and offline soul-chain verification.
import WebSocket from 'ws';

export { verifyChain, ChainError } from './verify.js';
export type { Reason, RootKeys, RevocationJSON, Verified } from './verify.js';

/** An error answer of the API: the status and a message naming the field or limit. */
export class CalnetError extends Error {
  constructor(public status: number, message: string, public retryAfter?: number) { super(`${message} (HTTP ${status})`); }
}

export interface Cal {
  id: string; name?: string; parent: string; depth: number; permissions: string[];
  quota: { cpu_millis: number; memory_bytes: number; pids: number; disk_bytes: number };
  state: string; healthy: boolean; children: string[]; namespace: string; [k: string]: unknown;
}
export interface Spawn { id: string; parent: string; state: string; reason?: string; cal?: string; actor: string; [k: string]: unknown }
export interface SpawnRequest {
  parent?: string; name?: string; permissions?: string[]; cpu_millis?: number; memory_bytes?: number; pids?: number;
  /** What the Cal may store in /data, in bytes (enforced by the kernel; default 64 MiB). */
  disk_bytes?: number;
  idempotency_key?: string; template?: string; template_yaml?: string; restart_policy?: string;
}
export interface CalnetEvent { seq: number; time: string; type: string; cal?: string; parent?: string; spawn?: string; state?: string; actor?: string; reason?: string }
/** One record of the audit trail: an event with its place in the hash chain. */
export interface AuditRecord extends CalnetEvent { dropped?: [number, number]; prev: string; hash: string }
/** A page of the audit trail, oldest first; `more` says more records match beyond it. */
export interface AuditPage { records: AuditRecord[]; more: boolean; head_seq: number }
/** Filters of the audit trail; `type` ending in '.' is a prefix; `after` pages forward, `before` back. */
export interface AuditQuery { since?: string | Date; until?: string | Date; actor?: string; type?: string; cal?: string; after?: number; before?: number; limit?: number }

/** A spawn criterion: a CEL condition over a Cal's metrics and an action (see docs/guide.md). */
export interface Rule {
  name: string; when: string; clear?: string; for?: string; cooldown: string; max_per_hour?: number;
  action: { kind: 'spawn' | 'retire'; count: number; template?: string };
}
export interface RuleDecision { rule: string; at: string; outcome: string; reason?: string }
export interface RulesView {
  rules: Rule[]; state: Record<string, { since?: string; firing?: boolean; disarmed?: boolean; last?: string; firings?: string[]; error?: string }>;
  decisions: RuleDecision[]; vars: { name: string; type: string; help: string }[];
}
/** An admission policy: spawns for which `deny` holds are refused with `message`. */
/** An admission policy: deny, or require_approval by `approvals` distinct administrators; on spawn (default) or revoke. */
export interface Policy { name: string; on?: 'spawn' | 'revoke'; deny?: string; require_approval?: string; approvals?: number; message: string }
export interface Vote { admin: string; at: string; comment?: string }
/** A request held by a require_approval policy. */
export interface Approval {
  id: string; operation: 'spawn' | 'revoke' | 'policies'; cal: string; spawn?: string; actor: string;
  /** The named administrator behind a request another principal made (token creator, rules author, spawner of the Cal); it may not decide it. */
  behind?: string; policy: string; message: string; required: number;
  approvals: Vote[]; rejection?: Vote; state: 'pending' | 'approved' | 'rejected' | 'expired'; result?: string; subtree_cals?: number;
  created_at: string; expires_at: string; [k: string]: unknown;
}
export interface AuthzEntry { surface: string; route: string; who: string[]; permission?: string; scope: string; note?: string }
export interface WhoAmI { actor: string; admin: boolean; root?: boolean; name?: string; token?: { id: string; parent: string; permissions: string[] } }
export interface Recommendation { resource: string; samples: number; observed_p95: number; quota: number; recommended?: number; flag?: string; reason: string }

/** A client of one control plane. */
export class Calnet {
  private base: string;
  constructor(addr: string, private token: string) {
    this.base = (addr.includes('://') ? addr : `http://${addr}`).replace(/\/$/, '');
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.base + path, {
      method, headers: { authorization: `Bearer ${this.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) {
      let msg = res.statusText;
      try { msg = JSON.parse(text).error ?? msg; } catch { /* not JSON */ }
      const ra = res.headers.get('retry-after');
      throw new CalnetError(res.status, msg, ra ? Number(ra) : undefined);
    }
    return JSON.parse(text) as T;
  }

  status() { return this.call<Record<string, unknown>>('GET', '/v1/status'); }
  list() { return this.call<Cal[]>('GET', '/v1/cals'); }
  get(id: string) { return this.call<Cal>('GET', `/v1/cals/${encodeURIComponent(id)}`); }
  /** Spawns a Cal; with wait it resolves once the spawn has ended. */
  spawn(req: SpawnRequest, wait = true) { return this.call<Spawn>('POST', `/v1/cals${wait ? '?wait=true' : ''}`, req); }
  /** Revokes a Cal and its whole subtree. */
  revoke(id: string, reason = '') {
    return this.call<{ revoked: string; subtree: string[]; approval?: Approval }>('POST', `/v1/cals/${encodeURIComponent(id)}/revoke`, { reason });
  }
  /**
   * Runs a Cal again: a failed or stopped one (the Master Cal included) with a fresh restart
   * budget, a running one as a new process; a revoked Cal is refused (409). With wait it
   * resolves once the Cal runs or has failed again; the reason goes with the event.
   */
  restart(id: string, wait = true, reason = '') { return this.call<Cal>('POST', `/v1/cals/${encodeURIComponent(id)}/restart${wait ? '?wait=true' : ''}`, { reason }); }
  /** Who this client's credential is. */
  whoami() { return this.call<WhoAmI>('GET', '/v1/whoami'); }
  /** The authorization table: every route, who may call it, and how its target is scoped. */
  authz() { return this.call<AuthzEntry[]>('GET', '/v1/authz'); }
  /** Adds a named administrator (root only); its credential is returned once. */
  addAdmin(name: string) { return this.call<{ token: string; admin: { name: string } }>('POST', '/v1/admins', { name }); }
  /** Approval requests, pending first; state filters them. */
  approvals(state = '') { return this.call<Approval[]>('GET', `/v1/approvals?state=${encodeURIComponent(state)}`); }
  /** Approves a held request as this administrator. */
  approve(id: string, comment = '') { return this.call<Approval>('POST', `/v1/approvals/${encodeURIComponent(id)}/approve`, { comment }); }
  /** Rejects a held request (a held spawn is rejected with it). */
  reject(id: string, comment = '') { return this.call<Approval>('POST', `/v1/approvals/${encodeURIComponent(id)}/reject`, { comment }); }
  /** Every Cal's log merged by time, filtered; pass `cursor` back to follow. */
  logs(q: { q?: string; level?: string; cals?: string[]; lines?: number; cursor?: string } = {}) {
    const p = new URLSearchParams();
    if (q.q) p.set('q', q.q);
    if (q.level) p.set('level', q.level);
    if (q.cals?.length) p.set('cals', q.cals.join(','));
    if (q.lines) p.set('lines', String(q.lines));
    if (q.cursor) p.set('cursor', q.cursor);
    return this.call<{ entries: { cal: string; name?: string; time?: string; level?: string; text: string }[]; truncated?: number; cursor: string }>('GET', `/v1/logs?${p}`);
  }
  /** A page of the audit trail (administrators), oldest first. */
  audit(q: AuditQuery = {}) {
    const p = new URLSearchParams();
    for (const k of ['since', 'until'] as const) { const v = q[k]; if (v) p.set(k, v instanceof Date ? v.toISOString() : v); }
    for (const k of ['actor', 'type', 'cal'] as const) { const v = q[k]; if (v) p.set(k, v); }
    for (const k of ['after', 'before', 'limit'] as const) { const v = q[k]; if (v) p.set(k, String(v)); }
    return this.call<AuditPage>('GET', `/v1/audit?${p}`);
  }
  /** The traffic matrix, busiest pairs first. */
  traffic() { return this.call<{ pairs: { from: string; to: string; kind: string; count: number; bytes?: number; last: string }[] }>('GET', '/v1/traffic'); }
  /** The permission matrix of the subtree rooted at `id`. */
  matrix(id: string) { return this.call<{ root: string; permissions: string[]; rows: { cal: string; name?: string; held: string[]; used: Record<string, number>; grantable: string[] | null }[] }>('GET', `/v1/cals/${encodeURIComponent(id)}/matrix`); }
  /** Sets what Cals of the subtree may grant to new children (admin); grantable null lifts the limit. */
  setMatrix(id: string, rows: { cal: string; grantable: string[] | null }[]) { return this.call<Record<string, unknown>>('PUT', `/v1/cals/${encodeURIComponent(id)}/matrix`, { rows }); }
  /** Previews a rule set in the control plane's simulator (at most 50 pools for a day). */
  simulate(req: { rules: Rule[]; workloads?: string[]; pools?: number; duration?: string; seed?: number }) {
    return this.call<{ total: { decisions: number; optimal_percent: number; over_oracle_percent: number; under_capacity_percent: number; oscillations: number }; rules: { rule: string; fired: number }[]; [k: string]: unknown }>('POST', '/v1/sim', req);
  }
  /** What the Cals of a template used (quotas, least-privilege permissions) and how its spawns went. */
  templateRecommendations(name: string) { return this.call<Record<string, unknown>>('GET', `/v1/templates/${encodeURIComponent(name)}/recommendations`); }
  /** A Cal's spawn criteria, their state and recent decisions. */
  rules(id: string) { return this.call<RulesView>('GET', `/v1/cals/${encodeURIComponent(id)}/rules`); }
  /** Replaces a Cal's spawn criteria; a rule that does not compile is refused with its field and CEL position. */
  setRules(id: string, rules: Rule[]) { return this.call<{ rules: Rule[] }>('PUT', `/v1/cals/${encodeURIComponent(id)}/rules`, { rules }); }
  /** Replays a rule over a Cal's recorded metrics without storing or acting on it. */
  previewRule(id: string, rule: Rule) {
    return this.call<{ samples: number; counts: Record<string, number>; decisions: RuleDecision[] }>('POST', `/v1/cals/${encodeURIComponent(id)}/rules/preview`, { rule });
  }
  /** The network's admission policies. */
  policies() { return this.call<{ policies: Policy[]; vars: { name: string; type: string; help: string }[] }>('GET', '/v1/policies'); }
  /**
   * Replaces the admission policies (admin). A named administrator's change while a
   * require_approval policy is in force is held: the answer is then the approval request.
   */
  setPolicies(policies: Policy[]) { return this.call<{ policies: Policy[] } | Approval>('PUT', '/v1/policies', { policies }); }
  /** Quota recommendations from a Cal's usage over the last hour. */
  recommendations(id: string) {
    return this.call<{ cal: string; window: string; resources: Recommendation[] }>('GET', `/v1/cals/${encodeURIComponent(id)}/recommendations`);
  }
  /** Follows the event stream after `after`; returns a function that stops it. */
  watch(onEvent: (e: CalnetEvent) => void, after = 0, onError?: (err: Error) => void): () => void {
    const ws = new WebSocket(`${this.base.replace(/^http/, 'ws')}/v1/events?after=${after}`, { headers: { authorization: `Bearer ${this.token}` } });
    ws.on('message', (data) => { try { onEvent(JSON.parse(data.toString())); } catch { /* ignore */ } });
    if (onError) ws.on('error', onError);
    return () => ws.close();
  }
}
