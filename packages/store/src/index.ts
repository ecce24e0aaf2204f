/**
 * @can-sync/store: the implementations of core's CanStore contract (the embedded store, and the
 * HTTP client of a CAN service), the CAN HTTP service itself and its API. A plain list of exports.
 */
export * as EmbeddedStore from "./EmbeddedStore.ts"
export * as CanHttpApi from "./CanHttpApi.ts"
export * as HttpService from "./HttpService.ts"
export * as HttpStore from "./HttpStore.ts"
