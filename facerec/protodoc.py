"""The protos' comments, by the full name of what they document, read from the descriptor set with source
info that facerec.protogen writes beside the stubs (the runtime descriptors keep no comments)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pb2

DESCRIPTORS = Path(__file__).parent / "v1" / "descriptors.binpb"

# Field numbers of the paths in SourceCodeInfo (google/protobuf/descriptor.proto).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6  # in a FileDescriptorProto
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4  # in a DescriptorProto
_VALUE = 2  # in an EnumDescriptorProto
_METHOD = 2  # in a ServiceDescriptorProto


@cache
def comments() -> dict[str, str]:
    """Full name ("facerec.v1.Box", "facerec.v1.Box.x", "facerec.v1.Alignment.ALIGNMENT_BOX",
    "facerec.v1.Gallery.Identify") → its comment: the leading one, else the trailing one, as one
    paragraph. Things without a comment are absent."""
    found: dict[str, str] = {}
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    for proto in files.file:
        texts = {
            tuple(loc.path): " ".join((loc.leading_comments or loc.trailing_comments).split())
            for loc in proto.source_code_info.location
        }
        names: dict[tuple[int, ...], str] = {}
        for i, message in enumerate(proto.message_type):
            _message(names, (_MESSAGE, i), f"{proto.package}.{message.name}", message)
        for i, enum in enumerate(proto.enum_type):
            _enum(names, (_ENUM, i), f"{proto.package}.{enum.name}", enum)
        for i, service in enumerate(proto.service):
            names[(_SERVICE, i)] = f"{proto.package}.{service.name}"
            for j, method in enumerate(service.method):
                names[(_SERVICE, i, _METHOD, j)] = f"{proto.package}.{service.name}.{method.name}"
        found.update({name: texts[path] for path, name in names.items() if texts.get(path)})
    return found


def _message(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    name: str,
    message: descriptor_pb2.DescriptorProto,
) -> None:
    names[path] = name
    for i, field in enumerate(message.field):
        names[(*path, _FIELD, i)] = f"{name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        _message(names, (*path, _NESTED, i), f"{name}.{nested.name}", nested)
    for i, enum in enumerate(message.enum_type):
        _enum(names, (*path, _NESTED_ENUM, i), f"{name}.{enum.name}", enum)


def _enum(
    names: dict[tuple[int, ...], str],
    path: tuple[int, ...],
    name: str,
    enum: descriptor_pb2.EnumDescriptorProto,
) -> None:
    names[path] = name
    # Enum values are scoped beside their enum in proto, but named under it here to stay unambiguous.
    for i, value in enumerate(enum.value):
        names[(*path, _VALUE, i)] = f"{name}.{value.name}"
