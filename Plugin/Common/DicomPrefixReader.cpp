#include "Common/DicomPrefixReader.h"

#include <cstring>

namespace AzureDicom
{
namespace
{
constexpr uint32_t UNDEFINED_LENGTH = 0xFFFFFFFF;
constexpr unsigned int MAX_SEQUENCE_DEPTH = 16;
constexpr size_t PREAMBLE_BYTES = 128;

constexpr uint32_t TAG_SOP_CLASS_UID = 0x00080016;
constexpr uint32_t TAG_SOP_INSTANCE_UID = 0x00080018;
constexpr uint32_t TAG_PATIENT_ID = 0x00100020;
constexpr uint32_t TAG_STUDY_INSTANCE_UID = 0x0020000D;
constexpr uint32_t TAG_SERIES_INSTANCE_UID = 0x0020000E;


bool IsUpperLetter(unsigned char c)
{
  return c >= 'A' && c <= 'Z';
}


bool HasLongLength(const char vr[2])
{
  static const char* const longVrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                        "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* candidate : longVrs)
  {
    if (vr[0] == candidate[0] && vr[1] == candidate[1])
    {
      return true;
    }
  }
  return false;
}


bool IsUnknownVr(const char vr[2])
{
  return vr[0] == 'U' && vr[1] == 'N';
}
}  // namespace


uint16_t DicomPrefixReader::Read16(size_t offset, bool bigEndian) const
{
  return bigEndian ? static_cast<uint16_t>((data_[offset] << 8) | data_[offset + 1])
                   : static_cast<uint16_t>(data_[offset] | (data_[offset + 1] << 8));
}


uint32_t DicomPrefixReader::Read32(size_t offset, bool bigEndian) const
{
  if (bigEndian)
  {
    return (uint32_t(data_[offset]) << 24) | (uint32_t(data_[offset + 1]) << 16) |
           (uint32_t(data_[offset + 2]) << 8) | uint32_t(data_[offset + 3]);
  }
  return uint32_t(data_[offset]) | (uint32_t(data_[offset + 1]) << 8) |
         (uint32_t(data_[offset + 2]) << 16) | (uint32_t(data_[offset + 3]) << 24);
}


// Item and delimitation tags (FFFE,xxxx) have no VR in any transfer syntax.
bool DicomPrefixReader::ReadElementHeader(Element& element, size_t position, bool explicitVr,
                                          bool bigEndian) const
{
  if (position > size_ || size_ - position < 8)
  {
    return false;
  }

  element.group = Read16(position, bigEndian);
  element.element = Read16(position + 2, bigEndian);
  if (element.group == 0xFFFE || !explicitVr)
  {
    element.vr[0] = element.vr[1] = 0;
    element.length = Read32(position + 4, bigEndian);
    element.valueOffset = position + 8;
    return true;
  }

  element.vr[0] = static_cast<char>(data_[position + 4]);
  element.vr[1] = static_cast<char>(data_[position + 5]);
  if (HasLongLength(element.vr))
  {
    if (size_ - position < 12)
    {
      return false;
    }
    element.length = Read32(position + 8, bigEndian);
    element.valueOffset = position + 12;
  }
  else
  {
    element.length = Read16(position + 6, bigEndian);
    element.valueOffset = position + 8;
  }
  return true;
}


std::string DicomPrefixReader::ReadText(const Element& element) const
{
  if (element.length == UNDEFINED_LENGTH || element.valueOffset > size_ ||
      size_ - element.valueOffset < element.length)
  {
    return "";
  }

  std::string value(reinterpret_cast<const char*>(data_ + element.valueOffset), element.length);
  while (!value.empty() && (value.back() == '\0' || value.back() == ' '))
  {
    value.pop_back();
  }
  return value;
}


bool DicomPrefixReader::ReadFileMeta(size_t& position, std::string& transferSyntax,
                                     DicomIdentifiers& meta) const
{
  for (;;)
  {
    Element element;
    if (!ReadElementHeader(element, position, true, false))
    {
      return false;
    }
    if (element.group != 0x0002)
    {
      return true;
    }
    if (element.length == UNDEFINED_LENGTH)
    {
      return false;
    }

    if (element.element == 0x0002)
    {
      meta.sopClassUid = ReadText(element);
    }
    else if (element.element == 0x0003)
    {
      meta.sopInstanceUid = ReadText(element);
    }
    else if (element.element == 0x0010)
    {
      transferSyntax = ReadText(element);
    }
    position = element.valueOffset + element.length;
  }
}


bool DicomPrefixReader::ReadSyntax(Syntax& syntax, DicomIdentifiers& meta) const
{
  if (size_ >= PREAMBLE_BYTES + 4 && std::memcmp(data_ + PREAMBLE_BYTES, "DICM", 4) == 0)
  {
    syntax.start = PREAMBLE_BYTES + 4;
    std::string transferSyntax;
    if (!ReadFileMeta(syntax.start, transferSyntax, meta))
    {
      return false;
    }

    if (transferSyntax == "1.2.840.10008.1.2")
    {
      syntax.explicitVr = false;
    }
    else if (transferSyntax == "1.2.840.10008.1.2.2")
    {
      syntax.bigEndian = true;
    }
    else if (transferSyntax == "1.2.840.10008.1.2.1.99" ||
             transferSyntax == "1.2.840.10008.1.2.4.95")
    {
      syntax.deflated = true;
    }
    return true;
  }

  if (size_ < 6)
  {
    return false;
  }
  // A data set without file meta information: explicit VR when bytes 4 and 5 are letters.
  syntax.explicitVr = IsUpperLetter(data_[4]) && IsUpperLetter(data_[5]);
  return true;
}


// Moves position past a value of undefined length: the items of a sequence (or of an UN
// element, whose content is implicit VR little endian) up to the sequence delimitation item.
bool DicomPrefixReader::SkipUndefinedLength(size_t& position, bool explicitVr, bool bigEndian,
                                            unsigned int depth) const
{
  if (depth > MAX_SEQUENCE_DEPTH)
  {
    return false;
  }

  for (;;)
  {
    Element item;
    if (!ReadElementHeader(item, position, explicitVr, bigEndian) || item.group != 0xFFFE)
    {
      return false;
    }
    position = item.valueOffset;

    if (item.element == 0xE0DD)  // sequence delimitation item
    {
      return true;
    }
    if (item.element != 0xE000)
    {
      return false;
    }

    if (item.length != UNDEFINED_LENGTH)
    {
      position += item.length;
      continue;
    }

    // An item of undefined length: its elements up to the item delimitation item.
    for (;;)
    {
      Element nested;
      if (!ReadElementHeader(nested, position, explicitVr, bigEndian))
      {
        return false;
      }
      if (nested.group == 0xFFFE && nested.element == 0xE00D)
      {
        position = nested.valueOffset;
        break;
      }
      if (!SkipValue(nested, position, explicitVr, bigEndian, depth + 1))
      {
        return false;
      }
    }
  }
}


bool DicomPrefixReader::SkipValue(const Element& element, size_t& position, bool explicitVr,
                                  bool bigEndian, unsigned int depth) const
{
  position = element.valueOffset;
  if (element.length == UNDEFINED_LENGTH)
  {
    // The content of an UN element is implicit VR little endian, whatever the data set's.
    const bool unknown = IsUnknownVr(element.vr);
    return SkipUndefinedLength(position, unknown ? false : explicitVr, unknown ? false : bigEndian,
                               depth);
  }
  if (size_ - position < element.length)
  {
    return false;
  }
  position += element.length;
  return true;
}


bool DicomPrefixReader::ReadTopLevel(const Syntax& syntax, uint32_t lastTag,
                                     DicomIdentifiers& identifiers) const
{
  size_t position = syntax.start;
  uint32_t previousTag = 0;
  for (;;)
  {
    Element element;
    if (!ReadElementHeader(element, position, syntax.explicitVr, syntax.bigEndian))
    {
      return false;
    }

    // Elements are sorted by tag, so none of interest comes after lastTag. A data set whose
    // tags are out of order or repeated is malformed, and which value counts is unclear.
    const uint32_t tag = (uint32_t(element.group) << 16) | element.element;
    if (position > syntax.start && tag <= previousTag)
    {
      return false;
    }
    previousTag = tag;
    if (tag > lastTag)
    {
      return true;
    }

    switch (tag)
    {
      case TAG_SOP_CLASS_UID:
        identifiers.sopClassUid = ReadText(element);
        break;
      case TAG_SOP_INSTANCE_UID:
        identifiers.sopInstanceUid = ReadText(element);
        break;
      case TAG_PATIENT_ID:
        identifiers.patientId = ReadText(element);
        break;
      case TAG_STUDY_INSTANCE_UID:
        identifiers.studyInstanceUid = ReadText(element);
        break;
      case TAG_SERIES_INSTANCE_UID:
        identifiers.seriesInstanceUid = ReadText(element);
        break;
      default:
        break;
    }
    if (tag == lastTag)
    {
      return true;
    }

    if (!SkipValue(element, position, syntax.explicitVr, syntax.bigEndian, 0))
    {
      return false;
    }
  }
}


bool DicomPrefixReader::ReadSopUids(DicomIdentifiers& identifiers) const
{
  Syntax syntax;
  DicomIdentifiers meta;
  if (!ReadSyntax(syntax, meta))
  {
    return false;
  }
  if (syntax.deflated)
  {
    identifiers = meta;
    return !identifiers.sopInstanceUid.empty();
  }

  DicomIdentifiers found;
  if (!ReadTopLevel(syntax, TAG_SOP_INSTANCE_UID, found) || found.sopInstanceUid.empty())
  {
    return false;
  }
  identifiers = found;
  return true;
}


bool DicomPrefixReader::ReadIdentifiers(DicomIdentifiers& identifiers) const
{
  Syntax syntax;
  DicomIdentifiers meta;
  DicomIdentifiers found;
  if (!ReadSyntax(syntax, meta) || syntax.deflated ||
      !ReadTopLevel(syntax, TAG_SERIES_INSTANCE_UID, found) || found.sopInstanceUid.empty() ||
      found.studyInstanceUid.empty() || found.seriesInstanceUid.empty())
  {
    return false;
  }
  identifiers = found;
  return true;
}
}  // namespace AzureDicom
