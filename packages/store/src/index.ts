/**
 * @can-sync/store: implementations of the CanStore contract. Keep this a plain list of exports.
 */
export * as EmbeddedStore from "./EmbeddedStore.ts"
export * as CanHttpApi from "./CanHttpApi.ts"
export * as HttpService from "./HttpService.ts"
export * as HttpStore from "./HttpStore.ts"
