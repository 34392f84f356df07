// The OpenAPI document's routes as types, for clients that call them (this
// SDK and the dashboard, web/src/api.ts): a call names a route and method
// the document has, and its parameters, body and answer are the
// document's; target() fills a route's parameters.
import type { paths } from './openapi.js';

/** The HTTP methods of the API, as the document's paths spell them. */
export type Method = 'get' | 'put' | 'post' | 'delete';
/** A route of the document, `{name}` standing for a path parameter. */
export type Route = keyof paths;
/** The operation of route R with method M. */
export type Op<R extends Route, M extends Method> = NonNullable<paths[R][M]>;
/** The methods the document gives route R. */
export type MethodOf<R extends Route> = { [M in Method]: [Op<R, M>] extends [never] ? never : M }[Method];
type JSONOf<T> = T extends { content: { 'application/json': infer B } } ? B : never;
/** The JSON of a successful answer: any of the 2xx answers the document lists. */
export type Answer<R extends Route, M extends Method> =
  Op<R, M> extends { responses: infer Rs } ? JSONOf<Rs[Extract<keyof Rs, 200 | 201 | 202>]> : never;
/** The JSON request body. */
export type Body<R extends Route, M extends Method> = Op<R, M> extends { requestBody?: infer B } ? JSONOf<NonNullable<B>> : never;
/** The path parameters: what fills the route's `{name}`s. */
export type PathParams<R extends Route, M extends Method> = Op<R, M> extends { parameters: { path?: infer P } } ? NonNullable<P> : never;
/** The query parameters. */
export type Query<R extends Route, M extends Method> = Op<R, M> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;
/** What a call of route R with method M may carry. */
export interface CallOptions<R extends Route, M extends Method> { path?: PathParams<R, M>; query?: Query<R, M>; body?: Body<R, M> }

/**
 * The path and query of a call: `{name}` in the route filled from `path`
 * (escaped; a missing one is an error), the query's set values appended.
 */
export function target(route: string, path: Record<string, unknown> = {}, query: Record<string, unknown> = {}): string {
  const out = route.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = path[k];
    if ((typeof v !== 'string' && typeof v !== 'number') || v === '') throw new TypeError(`${route}: path parameter ${k} is missing`);
    return encodeURIComponent(v);
  });
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const qs = q.toString();
  return qs ? `${out}?${qs}` : out;
}
