#pragma once

#include <cstdint>
#include <string>

namespace AzureDicom
{
// Writes DICOM Part 10 files byte by byte, for tests of code that reads them.
class DicomFileBuilder
{
public:
  static constexpr uint32_t UNDEFINED_LENGTH = 0xFFFFFFFF;

  // The data set is written with this transfer syntax, the file meta information (group 0002)
  // always in explicit VR little endian.
  explicit DicomFileBuilder(const std::string& transferSyntax) :
      explicitVr_(transferSyntax != "1.2.840.10008.1.2"),
      bigEndian_(transferSyntax == "1.2.840.10008.1.2.2")
  {
    file_ = std::string(128, '\0') + "DICM";
    AppendElement(file_, 0x0002, 0x0010, "UI", Pad(transferSyntax, '\0'), true, false);
  }

  // A data set without preamble and file meta information.
  static DicomFileBuilder WithoutFileMeta(bool explicitVr)
  {
    DicomFileBuilder builder(explicitVr ? "1.2.840.10008.1.2.1" : "1.2.840.10008.1.2");
    builder.file_.clear();
    return builder;
  }

  // Adds a meta information element (explicit VR little endian).
  DicomFileBuilder& AddMeta(uint16_t element, const std::string& uid)
  {
    AppendElement(file_, 0x0002, element, "UI", Pad(uid, '\0'), true, false);
    return *this;
  }

  // Adds a data set element with a text value, padded to an even length as DICOM requires: UIDs
  // with a NUL, other VRs with a space.
  DicomFileBuilder& Add(uint16_t group, uint16_t element, const char* vr, const std::string& value)
  {
    const char padding = (vr[0] == 'U' && vr[1] == 'I') ? '\0' : ' ';
    AppendElement(file_, group, element, vr, Pad(value, padding), explicitVr_, bigEndian_);
    return *this;
  }

  // Adds a sequence of one item that contains one text element. With undefinedLength, the
  // sequence and the item end with delimitation items instead of having a length.
  DicomFileBuilder& AddSequence(uint16_t group, uint16_t element, uint16_t nestedGroup,
                                uint16_t nestedElement, const std::string& nestedValue,
                                bool undefinedLength)
  {
    std::string itemContent;
    AppendElement(itemContent, nestedGroup, nestedElement, "UI", Pad(nestedValue, '\0'),
                  explicitVr_, bigEndian_);

    std::string item;
    AppendTag(item, 0xFFFE, 0xE000);
    if (undefinedLength)
    {
      Append32(item, UNDEFINED_LENGTH);
      item += itemContent;
      AppendTag(item, 0xFFFE, 0xE00D);
      Append32(item, 0);
      AppendTag(item, 0xFFFE, 0xE0DD);
      Append32(item, 0);
    }
    else
    {
      Append32(item, static_cast<uint32_t>(itemContent.size()));
      item += itemContent;
    }

    AppendTag(file_, group, element);
    if (explicitVr_)
    {
      file_ += "SQ";
      Append16(file_, 0);
    }
    Append32(file_, undefinedLength ? UNDEFINED_LENGTH : static_cast<uint32_t>(item.size()));
    file_ += item;
    return *this;
  }

  const std::string& GetFile() const
  {
    return file_;
  }

private:
  static std::string Pad(const std::string& value, char padding)
  {
    return value.size() % 2 == 0 ? value : value + padding;
  }

  void Append16(std::string& out, uint16_t value) const
  {
    AppendInteger(out, value, 2, bigEndian_);
  }

  void Append32(std::string& out, uint32_t value) const
  {
    AppendInteger(out, value, 4, bigEndian_);
  }

  static void AppendInteger(std::string& out, uint32_t value, unsigned int bytes, bool bigEndian)
  {
    for (unsigned int i = 0; i < bytes; i++)
    {
      const unsigned int shift = 8 * (bigEndian ? bytes - 1 - i : i);
      out.push_back(static_cast<char>((value >> shift) & 0xFF));
    }
  }

  void AppendTag(std::string& out, uint16_t group, uint16_t element) const
  {
    Append16(out, group);
    Append16(out, element);
  }

  static void AppendElement(std::string& out, uint16_t group, uint16_t element, const char* vr,
                            const std::string& value, bool explicitVr, bool bigEndian)
  {
    AppendInteger(out, group, 2, bigEndian);
    AppendInteger(out, element, 2, bigEndian);
    if (explicitVr)
    {
      out += vr;
      AppendInteger(out, static_cast<uint32_t>(value.size()), 2, bigEndian);
    }
    else
    {
      AppendInteger(out, static_cast<uint32_t>(value.size()), 4, bigEndian);
    }
    out += value;
  }

  bool explicitVr_;
  bool bigEndian_;
  std::string file_;
};
}  // namespace AzureDicom
