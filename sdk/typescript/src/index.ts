// The calnet TypeScript SDK: the REST and WebSocket API of a running
// network (`calnet up`), and offline soul-chain verification.
import WebSocket from 'ws';
import type { components } from './openapi.js';
import { target, type Answer, type Body, type CallOptions, type MethodOf, type Query, type Route } from './routes.js';

export { verifyChain, ChainError } from './verify.js';
export type { Reason, RootKeys, RevocationJSON, Verified } from './verify.js';

/** An error answer of the API: the status and a message naming the field or limit. */
export class CalnetError extends Error {
  constructor(public status: number, message: string, public retryAfter?: number) { super(`${message} (HTTP ${status})`); }
}

// The wire types are the OpenAPI document's schemas (openapi.ts is
// generated from internal/controlplane/openapi.json by `npm run gen`; the
// Go types are checked against the same document), so the SDK's types
// cannot drift from what the server sends.
export type { components, operations, paths } from './openapi.js';
export type { Answer, Body, Method, PathParams, Query, Route } from './routes.js';
type Schemas = components['schemas'];

/** A Cal: its place in the tree, permissions, quota and state. */
export type Cal = Schemas['Cal'];
export type SVIDVerdict = Schemas['SVIDVerdict'];
/** The record of one spawn request and how it went. */
export type Spawn = Schemas['Spawn'];
/** What POST /v1/cals asks for; absent quotas are the template's. */
export type SpawnRequest = Schemas['SpawnRequest'];
/** One event of the stream (GET /v1/events). */
export type CalnetEvent = Schemas['Event'];
/** One record of the audit trail: an event with its place in the hash chain. */
export type AuditRecord = Schemas['AuditRecord'];
/** A page of the audit trail, oldest first; `more` says more records match beyond it. */
export type AuditPage = Schemas['AuditPage'];
/** Filters of the audit trail; `type` ending in '.' is a prefix; `after` pages forward, `before` back. */
export type AuditQuery = Omit<Query<'/v1/audit', 'get'>, 'since' | 'until'> & { since?: string | Date; until?: string | Date };
/** A spawn criterion: a CEL condition over a Cal's metrics and an action (see docs/guide.md). */
export type Rule = Schemas['Rule'];
/** What a rule decided at one evaluation. */
export type RuleDecision = Schemas['RuleDecision'];
/** A Cal's spawn criteria, their state, recent decisions and the variables a condition may use. */
export type RulesView = Schemas['RulesView'];
/** An admission policy: deny, or require_approval by `approvals` distinct administrators; on spawn (default) or revoke. */
export type Policy = Schemas['Policy'];
/** One administrator's approval or rejection. */
export type Vote = Schemas['Vote'];
/** A request held by a require_approval policy. */
export type Approval = Schemas['Approval'];
/** One row of the authorization table. */
export type AuthzEntry = Schemas['AuthzEntry'];
/** Who a credential is. */
export type WhoAmI = Schemas['WhoAmI'];
/** A quota recommendation for one resource. */
export type Recommendation = Schemas['Recommendation'];
export type Permission = Schemas['Permission'];
export type Quota = Schemas['Quota'];
export type Status = Schemas['Status'];
export type Revoked = Schemas['Revoked'];
export type Admin = Schemas['Admin'];
export type LogPage = Schemas['LogPage'];
export type PermissionMatrix = Schemas['PermissionMatrix'];
export type SimReport = Schemas['SimReport'];
export type RulesDoc = Schemas['RulesDoc'];
export type RulePreview = Schemas['RulePreview'];
export type PoliciesDoc = Schemas['PoliciesDoc'];
export type PoliciesView = Schemas['PoliciesView'];
export type Recommendations = Schemas['Recommendations'];
export type TemplateRecommendations = Schemas['TemplateRecommendations'];
/** The traffic matrix: who talked to whom, how often and how much. */
export type Traffic = Answer<'/v1/traffic', 'get'>;

/** A client of one control plane. */
export class Calnet {
  private base: string;
  constructor(addr: string, private token: string) {
    this.base = (addr.includes('://') ? addr : `http://${addr}`).replace(/\/$/, '');
  }

  /** Calls a route of the document: `{name}` in it is filled from `req.path`. */
  private async call<R extends Route, M extends MethodOf<R>>(method: M, route: R, req: CallOptions<R, M> = {}): Promise<Answer<R, M>> {
    const path = target(route, req.path, req.query as Record<string, unknown> | undefined);
    const body = req.body;
    const res = await fetch(this.base + path, {
      method: method.toUpperCase(), headers: { authorization: `Bearer ${this.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) {
      let msg = res.statusText;
      try { msg = JSON.parse(text).error ?? msg; } catch { /* not JSON */ }
      const ra = res.headers.get('retry-after');
      throw new CalnetError(res.status, msg, ra ? Number(ra) : undefined);
    }
    return JSON.parse(text) as Answer<R, M>;
  }

  /** The network's name, Master Cal, counts of Cals by state and isolation. */
  status(): Promise<Status> { return this.call('get', '/v1/status'); }
  list(): Promise<Cal[]> { return this.call('get', '/v1/cals'); }
  get(id: string): Promise<Cal> { return this.call('get', '/v1/cals/{id}', { path: { id } }); }
  /** Spawns a Cal; with wait it resolves once the spawn has ended. */
  spawn(req: SpawnRequest, wait = true): Promise<Spawn> { return this.call('post', '/v1/cals', { query: wait ? { wait: 'true' } : {}, body: req }); }
  /** Revokes a Cal and its whole subtree; a revocation held for approval has `approval` set and `revoked` empty. */
  revoke(id: string, reason = ''): Promise<Revoked> { return this.call('post', '/v1/cals/{id}/revoke', { path: { id }, body: { reason } }); }
  /**
   * Runs a Cal again: a failed or stopped one (the Master Cal included) with a fresh restart
   * budget, a running one as a new process; a revoked Cal is refused (409). With wait it
   * resolves once the Cal runs or has failed again; the reason goes with the event.
   */
  restart(id: string, wait = true, reason = ''): Promise<Cal> {
    return this.call('post', '/v1/cals/{id}/restart', { path: { id }, query: wait ? { wait: 'true' } : {}, body: { reason } });
  }
  /** Who this client's credential is. */
  whoami(): Promise<WhoAmI> { return this.call('get', '/v1/whoami'); }
  /** The authorization table: every route, who may call it, and how its target is scoped. */
  authz(): Promise<AuthzEntry[]> { return this.call('get', '/v1/authz'); }
  /** Adds a named administrator (root only); its credential is returned once. */
  addAdmin(name: string): Promise<{ token: string; admin: Admin }> { return this.call('post', '/v1/admins', { body: { name } }); }
  /** Approval requests, pending first; state filters them. */
  approvals(state: Query<'/v1/approvals', 'get'>['state'] = ''): Promise<Approval[]> { return this.call('get', '/v1/approvals', { query: { state } }); }
  /** Approves a held request as this administrator. */
  approve(id: string, comment = ''): Promise<Approval> { return this.call('post', '/v1/approvals/{id}/approve', { path: { id }, body: { comment } }); }
  /** Rejects a held request (a held spawn is rejected with it). */
  reject(id: string, comment = ''): Promise<Approval> { return this.call('post', '/v1/approvals/{id}/reject', { path: { id }, body: { comment } }); }
  /** Every Cal's log merged by time, filtered; pass `cursor` back to follow. */
  logs(q: Omit<Query<'/v1/logs', 'get'>, 'cals'> & { cals?: string[] } = {}): Promise<LogPage> {
    return this.call('get', '/v1/logs', { query: { ...q, cals: q.cals?.join(',') } });
  }
  /** A page of the audit trail (administrators), oldest first. */
  audit(q: AuditQuery = {}): Promise<AuditPage> {
    const time = (v?: string | Date) => (v instanceof Date ? v.toISOString() : v);
    return this.call('get', '/v1/audit', {
      query: { ...q, since: time(q.since), until: time(q.until), after: q.after || undefined, before: q.before || undefined, limit: q.limit || undefined },
    });
  }
  /** The traffic matrix, busiest pairs first. */
  traffic(): Promise<Traffic> { return this.call('get', '/v1/traffic'); }
  /** The permission matrix of the subtree rooted at `id`. */
  matrix(id: string): Promise<PermissionMatrix> { return this.call('get', '/v1/cals/{id}/matrix', { path: { id } }); }
  /** Sets what Cals of the subtree may grant to new children (admin); grantable null lifts the limit. */
  setMatrix(id: string, rows: Body<'/v1/cals/{id}/matrix', 'put'>['rows']): Promise<PermissionMatrix> {
    return this.call('put', '/v1/cals/{id}/matrix', { path: { id }, body: { rows } });
  }
  /** The network's SPIFFE trust bundle (JWKS): its X.509 root, whose key is the genesis key's Ed25519 half. */
  spiffeBundle(): Promise<Answer<'/v1/spiffe/bundle', 'get'>> { return this.call('get', '/v1/spiffe/bundle'); }
  /** Verifies an X.509-SVID chain (base64 DER, leaf first) against the bundle and the revocations; says why when it fails. */
  verifySVID(chain: string[]): Promise<SVIDVerdict> { return this.call('post', '/v1/spiffe/verify', { body: { chain } }); }
  /** Previews a rule set in the control plane's simulator (at most 50 pools for a day). */
  simulate(req: Body<'/v1/sim', 'post'>): Promise<SimReport> { return this.call('post', '/v1/sim', { body: req }); }
  /** What the Cals of a template used (quotas, least-privilege permissions) and how its spawns went. */
  templateRecommendations(name: string): Promise<TemplateRecommendations> {
    return this.call('get', '/v1/templates/{name}/recommendations', { path: { name } });
  }
  /** A Cal's spawn criteria, their state and recent decisions. */
  rules(id: string): Promise<RulesView> { return this.call('get', '/v1/cals/{id}/rules', { path: { id } }); }
  /** Replaces a Cal's spawn criteria; a rule that does not compile is refused with its field and CEL position. */
  setRules(id: string, rules: Rule[]): Promise<RulesDoc> { return this.call('put', '/v1/cals/{id}/rules', { path: { id }, body: { rules } }); }
  /** Replays a rule over a Cal's recorded metrics without storing or acting on it. */
  previewRule(id: string, rule: Rule): Promise<RulePreview> { return this.call('post', '/v1/cals/{id}/rules/preview', { path: { id }, body: { rule } }); }
  /** The network's admission policies. */
  policies(): Promise<PoliciesView> { return this.call('get', '/v1/policies'); }
  /**
   * Replaces the admission policies (admin). A named administrator's change while a
   * require_approval policy is in force is held: the answer is then the approval request.
   */
  setPolicies(policies: Policy[]): Promise<PoliciesDoc | Approval> { return this.call('put', '/v1/policies', { body: { policies } }); }
  /** Quota recommendations from a Cal's usage over the last hour. */
  recommendations(id: string): Promise<Recommendations> { return this.call('get', '/v1/cals/{id}/recommendations', { path: { id } }); }
  /** Follows the event stream after `after`; returns a function that stops it. */
  watch(onEvent: (e: CalnetEvent) => void, after = 0, onError?: (err: Error) => void): () => void {
    const ws = new WebSocket(`${this.base.replace(/^http/, 'ws')}/v1/events?after=${after}`, { headers: { authorization: `Bearer ${this.token}` } });
    ws.on('message', (data) => { try { onEvent(JSON.parse(data.toString())); } catch { /* ignore */ } });
    if (onError) ws.on('error', onError);
    return () => ws.close();
  }
}
