// A small program against the TypeScript client generated from the gateway's /openapi.json
// (openapi-typescript writes ./schema.d.ts; openapi-fetch calls it). tests/gateway/test_openapi.py
// generates the schema and type-checks this file with `tsc --noEmit`: a route, an operation id or a
// field that the document loses, renames or retypes fails the check.
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./schema";

type ErrorBody = components["schemas"]["ErrorBody"];
type IdentifiedFace = components["schemas"]["IdentifiedFace"];
// Operation ids are the RPC names.
type IdentifyAnswer = operations["Identify"]["responses"][200]["content"]["application/json"];
type BusyAnswer = operations["Represent"]["responses"][429]["content"]["application/json"];

const client = createClient<paths>({ baseUrl: "http://localhost:8080" });

function failure(error: ErrorBody, retryAfter: string | null): Error {
  const fields = error.details.flatMap((detail) => {
    const violations = detail["field_violations"];
    return Array.isArray(violations) ? violations.map((v) => String(v.field)) : [];
  });
  const when = retryAfter === null ? "do not retry" : `retry in ${retryAfter} s`;
  return new Error(`${error.code} ${error.reason} [${fields.join(", ")}] ${error.message} (${when}, ${error.request_id})`);
}

export async function whoIs(picture: string): Promise<string[]> {
  const { data, error, response } = await client.POST("/v1/identify", { body: { image: picture, top_k: 3 } });
  if (error) throw failure(error, response.headers.get("Retry-After"));
  const answer: IdentifyAnswer = data;
  return answer.faces.map((face: IdentifiedFace) =>
    face.known ? `${face.identity} (${face.distance.toFixed(2)} <= ${answer.threshold})` : face.not_identifiable,
  );
}

export async function samePerson(a: string, b: string): Promise<boolean> {
  const { data, error } = await client.POST("/v1/verify", { body: { image_a: a, image_b: b } });
  if (error) throw failure(error, null);
  return data.match && data.distance <= data.threshold;
}

export async function templates(picture: string): Promise<{ model: string; values: number[] }[]> {
  const { data, error } = await client.POST("/v1/represent", { body: { image: picture, max_faces: 2 } });
  if (error) {
    const busy: BusyAnswer = error;
    throw failure(busy, null);
  }
  return data.faces
    .filter((face) => face.quality?.identifiable && face.quality.size_px >= 20)
    .map((face) => ({ model: face.embedding?.model ?? data.model, values: face.embedding?.values ?? [] }));
}

export async function nearest(values: number[]): Promise<[string, number][]> {
  const { data } = await client.POST("/v1/search", { body: { embedding: values, top_k: 5 } });
  return (data?.hits ?? []).map((hit): [string, number] => [hit.identity, hit.face_id]);
}

export async function people(): Promise<string[]> {
  const { data } = await client.GET("/v1/identities", { params: { query: { page_size: 10 } } });
  return data ? [...data.identities.map((i) => `${i.identity}: ${i.face_count}`), data.next_page_token] : [];
}

export async function forget(name: string, faceId: number): Promise<number> {
  const { data } = await client.DELETE("/v1/identities/{identity}", { params: { path: { identity: name } } });
  await client.DELETE("/v1/faces/{face_id}", { params: { path: { face_id: faceId } } });
  return data?.faces_removed ?? 0;
}

export async function enrolled(name: string, pictures: string[]): Promise<string[]> {
  const { data } = await client.POST("/v1/enroll", { body: { identity: name, images: pictures } });
  return (data?.results ?? []).map((r) => `${r.filename}: ${r.outcome} ${r.error?.reason ?? ""}`);
}

export async function figures(): Promise<string> {
  const { data } = await client.GET("/v1/stats");
  return data ? `${data.faces} faces, ${data.model}, ${data.operating_points.map((p) => p.name).join(" ")}` : "";
}

// Every gallery route also answers under a collection; the collections and their operations have their own.
export async function inCollection(collection: string, picture: string): Promise<string[]> {
  const made = await client.POST("/v1/collections", {
    body: { name: collection, contract: { model: "facenet-keras-128-int8" } },
  });
  const model: string = made.data?.contract?.model ?? "";
  const { data } = await client.POST("/v1/collections/{collection}/identify", {
    params: { path: { collection } },
    body: { image: picture, top_k: 3 },
  });
  const started = await client.POST("/v1/collections/{collection}:reembed", {
    params: { path: { collection } },
    body: { contract: { model }, drop_failed: true },
  });
  const id = (started.data?.name ?? "operations/").slice("operations/".length);
  const polled = await client.GET("/v1/operations/{operation_id}", { params: { path: { operation_id: id } } });
  const done: boolean = polled.data?.done ?? false;
  return [...(data?.faces ?? []).map((face) => face.identity), `${model} ${done}`];
}
