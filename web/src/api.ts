// A small client of calnet's API for the dashboard; errors carry the
// API's message so they can be shown next to the control that caused them.
import type { components } from '../../sdk/typescript/src/openapi';
import { target, type Answer, type CallOptions, type MethodOf, type Route } from '../../sdk/typescript/src/routes';

export class ApiError extends Error {
  constructor(public status: number, message: string) { super(message); }
}

// The wire types and routes are the OpenAPI document's, generated into
// the TypeScript SDK (sdk/typescript/src/openapi.ts, `npm run gen` there)
// and shared with it: a call names a route of the document, and its
// parameters, body and answer are typed from it, so the dashboard cannot
// drift from what the server sends.
type Schemas = components['schemas'];
export type Cal = Schemas['Cal'];
export type Spawn = Schemas['Spawn'];
export type LogPage = Schemas['LogPage'];
export type LogEntry = LogPage['entries'][number];
export type WhoAmI = Schemas['WhoAmI'];
export type Approval = Schemas['Approval'];
export type CalEvent = Schemas['Event'];
export type AuditRecord = Schemas['AuditRecord'];
export type AuditPage = Schemas['AuditPage'];
export type Limits = Schemas['Limits'];
export type Permission = Schemas['Permission'];
export type Rule = Schemas['Rule'];
export type RuleDecision = Schemas['RuleDecision'];
export type RulesView = Schemas['RulesView'];
export type PermissionMatrix = Schemas['PermissionMatrix'];
export type SimQuality = Schemas['SimQuality'];
export type { Answer, Body, Query } from '../../sdk/typescript/src/routes';

let token = sessionStorage.getItem('calnet-token') ?? '';

export function setToken(t: string) { token = t; sessionStorage.setItem('calnet-token', t); }
export function clearToken() { token = ''; sessionStorage.removeItem('calnet-token'); }
export function hasToken() { return token !== ''; }

// authFetch GETs a non-JSON answer (a profile) with the credential.
export async function authFetch(path: string): Promise<Response> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = JSON.parse(await res.text()).error ?? msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  return res;
}

// wsURL is a WebSocket address on this origin; browsers cannot set headers
// on WebSocket requests, so the credential travels as access_token.
export function wsURL(path: string): string {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${proto}://${location.host}${path}${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
}

// api calls a route of the document ('/v1/cals/{id}', its `{id}` filled
// from req.path) and answers the JSON the document gives for it.
export async function api<R extends Route, M extends MethodOf<R>>(method: M, route: R, req: CallOptions<R, M> = {}): Promise<Answer<R, M>> {
  const body = req.body;
  const res = await fetch(target(route, req.path, req.query as Record<string, unknown> | undefined), {
    method: method.toUpperCase(), headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = JSON.parse(text).error ?? msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  return JSON.parse(text) as Answer<R, M>;
}

// events follows the WebSocket stream, reconnecting with backoff and
// resuming after the last sequence number seen (survives a control-plane
// restart).
export function events(onEvent: (e: CalEvent) => void, onState: (s: string) => void): () => void {
  let last = 0, stopped = false, ws: WebSocket | null = null, backoff = 250;
  const connect = () => {
    if (stopped) return;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    // A restarted control plane numbers events afresh: the dashboard
    // refetches its state on every (re)connect, so replaying is harmless.
    ws = new WebSocket(`${proto}://${location.host}/v1/events?after=0&access_token=${encodeURIComponent(token)}`);
    ws.onopen = () => { backoff = 250; onState("live"); onEvent({ seq: 0, time: new Date().toISOString(), type: 'connected' }); };
    ws.onmessage = (m) => { try { const e = JSON.parse(m.data); last = Math.max(last, e.seq); onEvent(e); } catch { /* ignore */ } };
    // A stream stopped on sign-out may close after the next sign-in's
    // stream opened: it must not report anything then.
    ws.onclose = () => { if (stopped) return; onState('reconnecting…'); setTimeout(connect, backoff = Math.min(backoff * 2, 5000)); };
  };
  connect();
  return () => { stopped = true; ws?.close(); };
}
