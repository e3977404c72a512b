// Finds the SOP Class UID and SOP Instance UID at the start of a DICOM Part 10 file.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace NullSink
{
const unsigned int MAX_SEQUENCE_DEPTH = 16;


// The UIDs read from the start of one DICOM Part 10 file.
struct InstanceUids
{
  std::string sopClassUid;
  std::string sopInstanceUid;
};


// Reads elements of a DICOM data set in memory, just far enough to find (0008,0016) and
// (0008,0018). Deflated data sets are not inflated: their file meta information's (0002,0002)
// and (0002,0003) are used instead, which Part 10 requires to be equal to them.
class DicomPrefixReader
{
public:
  DicomPrefixReader(const char* data, size_t size)
      : data_(reinterpret_cast<const unsigned char*>(data)), size_(size)
  {
  }

  // Fills uids and returns true when the SOP Instance UID was found in the prefix.
  bool Read(InstanceUids& uids)
  {
    size_t position = 0;
    bool explicitVr = true;
    bool bigEndian = false;
    InstanceUids meta;

    if (size_ >= 132 && std::memcmp(data_ + 128, "DICM", 4) == 0)
    {
      position = 132;
      std::string transferSyntax;
      if (!ReadFileMeta(position, transferSyntax, meta))
      {
        return false;
      }

      if (transferSyntax == "1.2.840.10008.1.2")
      {
        explicitVr = false;
      }
      else if (transferSyntax == "1.2.840.10008.1.2.2")
      {
        bigEndian = true;
      }
      else if (transferSyntax == "1.2.840.10008.1.2.1.99" ||
               transferSyntax == "1.2.840.10008.1.2.4.95")
      {
        uids = meta;
        return !uids.sopInstanceUid.empty();
      }
    }
    else if (size_ >= 6)
    {
      // A data set without file meta information: explicit VR when bytes 4 and 5 are letters.
      explicitVr = IsUpperLetter(data_[4]) && IsUpperLetter(data_[5]);
    }

    return ReadTopLevel(position, explicitVr, bigEndian, uids);
  }

private:
  struct Element
  {
    uint16_t group = 0;
    uint16_t element = 0;
    char vr[2] = {0, 0};
    uint32_t length = 0;
    size_t valueOffset = 0;
  };

  static const uint32_t UNDEFINED_LENGTH = 0xFFFFFFFF;

  static bool IsUpperLetter(unsigned char c)
  {
    return c >= 'A' && c <= 'Z';
  }

  uint16_t Read16(size_t offset, bool bigEndian) const
  {
    return bigEndian ? static_cast<uint16_t>((data_[offset] << 8) | data_[offset + 1])
                     : static_cast<uint16_t>(data_[offset] | (data_[offset + 1] << 8));
  }

  uint32_t Read32(size_t offset, bool bigEndian) const
  {
    if (bigEndian)
    {
      return (uint32_t(data_[offset]) << 24) | (uint32_t(data_[offset + 1]) << 16) |
             (uint32_t(data_[offset + 2]) << 8) | uint32_t(data_[offset + 3]);
    }
    return uint32_t(data_[offset]) | (uint32_t(data_[offset + 1]) << 8) |
           (uint32_t(data_[offset + 2]) << 16) | (uint32_t(data_[offset + 3]) << 24);
  }

  static bool HasLongLength(const char vr[2])
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

  // Reads the header of the element at position. Item and delimitation tags (FFFE,xxxx) have no
  // VR in any transfer syntax.
  bool ReadElementHeader(Element& element, size_t position, bool explicitVr, bool bigEndian) const
  {
    if (position + 8 > size_)
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
      if (position + 12 > size_)
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

  std::string ReadUid(const Element& element) const
  {
    if (element.length == UNDEFINED_LENGTH || element.valueOffset + element.length > size_)
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

  bool ReadFileMeta(size_t& position, std::string& transferSyntax, InstanceUids& meta) const
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
        meta.sopClassUid = ReadUid(element);
      }
      else if (element.element == 0x0003)
      {
        meta.sopInstanceUid = ReadUid(element);
      }
      else if (element.element == 0x0010)
      {
        transferSyntax = ReadUid(element);
      }
      position = element.valueOffset + element.length;
    }
  }

  // Moves position past a value of undefined length: the items of a sequence (or of an UN
  // element, whose content is implicit VR little endian) up to the sequence delimitation item.
  bool SkipUndefinedLength(size_t& position, bool explicitVr, bool bigEndian,
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
        position = nested.valueOffset;
        if (nested.group == 0xFFFE && nested.element == 0xE00D)
        {
          break;
        }
        if (nested.length == UNDEFINED_LENGTH)
        {
          const bool unknown = nested.vr[0] == 'U' && nested.vr[1] == 'N';
          if (!SkipUndefinedLength(position, unknown ? false : explicitVr,
                                   unknown ? false : bigEndian, depth + 1))
          {
            return false;
          }
        }
        else
        {
          position += nested.length;
        }
      }
    }
  }

  bool ReadTopLevel(size_t position, bool explicitVr, bool bigEndian, InstanceUids& uids) const
  {
    for (;;)
    {
      Element element;
      if (!ReadElementHeader(element, position, explicitVr, bigEndian))
      {
        return false;
      }

      const uint32_t tag = (uint32_t(element.group) << 16) | element.element;
      if (tag > 0x00080018)
      {
        return false;  // elements are sorted by tag, so (0008,0018) is absent
      }
      if (tag == 0x00080016)
      {
        uids.sopClassUid = ReadUid(element);
      }
      else if (tag == 0x00080018)
      {
        uids.sopInstanceUid = ReadUid(element);
        return !uids.sopInstanceUid.empty();
      }

      position = element.valueOffset;
      if (element.length == UNDEFINED_LENGTH)
      {
        const bool unknown = element.vr[0] == 'U' && element.vr[1] == 'N';
        if (!SkipUndefinedLength(position, unknown ? false : explicitVr,
                                 unknown ? false : bigEndian, 0))
        {
          return false;
        }
      }
      else
      {
        position += element.length;
      }
    }
  }

  const unsigned char* data_;
  size_t size_;
};
}  // namespace NullSink
