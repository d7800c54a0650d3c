// The public HTTP API, as any client calls it. The key (admin or store) lives only in this
// tab's sessionStorage: it is gone when the tab closes and is never written to a cookie.

const KEY_SLOT = "jewelry-forecast.api-key";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_SLOT),
  set: (key) => sessionStorage.setItem(KEY_SLOT, key),
  clear: () => sessionStorage.removeItem(KEY_SLOT),
};

/** The service answered with an error status; `message` is its `detail`, readable. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(detail));
    this.status = status;
    this.detail = detail;
  }
}

/** No answer at all: the service is down or the network is. */
export class Unreachable extends Error {}

function describe(detail) {
  if (Array.isArray(detail)) {
    // A 422 lists each broken rule as {loc, msg, type}; the field's name is the useful part.
    return detail
      .map((item) => {
        const field = (item.loc ?? []).filter((part) => !["body", "query", "path"].includes(part));
        return field.length ? `${field.join(".")}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  return typeof detail === "string" ? detail : "unexpected answer from the service";
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey.get();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new Unreachable(`the service at ${location.origin} does not answer (${error.message})`);
  }
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, payload?.detail ?? response.statusText);
  return payload;
}
